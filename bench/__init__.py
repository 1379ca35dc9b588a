"""Benchmarks (not tests): throughput and peak memory of the engine, the training loop and
segment.py, side by side with naive baselines of the original recipe (bench/naive.py).
Accuracy studies are in experiments/; the AVX2 limiter is tools/avx2.py, run as
`python -m bench.avx2 COMMAND` (bench/avx2.py).

`make bench` runs bench/run_all.py, which writes the "## Speed and memory" section of
BENCHMARKS.md. The helpers here are what every benchmark shares: the machine description,
the synthetic dataset, and the peak-memory probe.
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

__all__ = ["machine_info", "isa_limit", "synthetic_data", "peak_rss_mib"]

# How an AMX/AVX-512 machine runs like an ordinary AVX2 CPU (BENCHMARKS.md, "Every CPU";
# python -m bench.avx2 sets these and hides AVX-512 from CPUID).
ISA_LIMIT_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def isa_limit() -> str:
    """How this process is limited to AVX2 ("" when it runs natively)."""
    from tools.avx2 import LIMIT_VAR

    limits = [f"{name}={os.environ[name]}" for name in ISA_LIMIT_VARS if os.environ.get(name)]
    if os.environ.get(LIMIT_VAR) == "cpuid":
        limits.append("+ CPUID without AVX-512/AMX (bench.avx2)")
    return " ".join(limits)


def machine_info() -> dict[str, str]:
    """CPU model (from /proc/cpuinfo), cores, torch version, and the bf16/AMX flags that matter here."""
    import torch  # here, so that `python -m bench.avx2 COMMAND` starts without loading PyTorch

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in reversed(Path("/proc/cpuinfo").read_text().splitlines()):  # first core's wins
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    return {
        "cpu": model,
        "cores": str(len(os.sched_getaffinity(0))),
        "isa": " ".join(isa) or "-",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
    }


def synthetic_data(root: Path, sequences: int = 4, frames: int = 20, label_every: int = 2) -> Path:
    """A small synthetic OpenEDS folder (dataset.synthetic), generated once and reused."""
    from dataset.synthetic import generate

    root = Path(root)
    if not (root / "images.txt").is_file():  # images.txt is written last: the folder is complete
        generate(
            root, sequences=sequences, frames=frames, label_every=label_every, test_per_sequence=0, workers=2
        )
    return root


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory of this process (VmHWM) and of its largest finished child (workers)."""
    main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                main = int(line.split()[1]) / 1024
    except OSError:
        pass
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main_mib": round(main, 1), "largest_child_mib": round(child, 1)}
