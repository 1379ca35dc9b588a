"""`python -m bench.avx2 COMMAND`: run a command as on an ordinary AVX2 CPU. The limiter is
tools/avx2.py (its docstring says how); this is its name beside the benchmarks that use it."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file (python bench/avx2.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from tools.avx2 import main

if __name__ == "__main__":
    main()
