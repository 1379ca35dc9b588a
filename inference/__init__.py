"""Inference: the ensemble + TTA engine, members, prediction runs and their files, device and precision, the Segmenter."""
