"""Device and precision for training and prediction alike: what --gpu means, which precision and
memory layout run fast on this machine (hardware.py), autocast. Below inference/ and training/,
which both choose a device."""
