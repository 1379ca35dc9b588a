"""`python -m dataset.synthetic` (or `python dataset/synthetic`): write a synthetic OpenEDS folder."""

import sys
from pathlib import Path

if not __package__:  # run as a folder (python dataset/synthetic): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from dataset.synthetic.cli import main

if __name__ == "__main__":
    main()
