"""Training: schedules, augmentation, data loaders, the epoch loop, progress and resume state."""
