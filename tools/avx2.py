"""Run a command as on an ordinary AVX2 CPU, every library included (BENCHMARKS.md, "Every CPU").

    python -m bench.avx2 python -m bench.student          # what `make bench*` runs for AVX2 rows
    python -m bench.avx2 --check                          # what each library sees, then exit

Two layers, both set in the command's environment:
- ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: PyTorch's own caps (ATen, oneDNN);
- tools/avx2_cpuid.c, built once with the system's C compiler and loaded with LD_PRELOAD: the
  CPUID instruction answers with AVX-512, AVX-VNNI and AMX hidden, so libraries without a cap of
  their own (onnxruntime's MLAS, numpy, OpenCV) choose their AVX2 kernels too; GLIBC_TUNABLES does
  the same for glibc, which reads CPUID before any library loads.
The second layer needs Linux's CPUID faulting (the x86 flag `cpuid_fault`, on Intel CPUs since
Ivy Bridge and in most VMs) and a C compiler. Without them the command runs with the first layer
only, after a one-line warning: onnxruntime's figures are then not AVX2 ones.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["AVX2_ENV", "cpuid_library", "avx2_env", "main"]

SOURCE = Path(__file__).with_name("avx2_cpuid.c")
AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX_VNNI",
}
# Set in the command's environment: how it is limited ("cpuid" or "env"), for the benchmarks' tables.
LIMIT_VAR = "OPENEDS_AVX2_LIMIT"


def _has_cpuid_faulting() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "cpuid_fault" in line.split() for line in text.splitlines())


def cpuid_library() -> tuple[Path | None, str]:
    """The built CPUID library (compiled on first use into the user's cache), or None and why not."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return None, f"CPUID faulting is a Linux x86-64 feature, not {sys.platform}/{os.uname().machine}"
    if not _has_cpuid_faulting():
        return None, "this CPU or VM has no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None, "no C compiler (cc) to build tools/avx2_cpuid.c"
    source = SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openeds-seg"
    library = cache / f"avx2_cpuid-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if not library.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        proc = subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-ldl"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            return None, f"{compiler} failed on {SOURCE.name}: {proc.stderr.strip().splitlines()[-1:]}"
        partial.replace(library)  # atomic: a concurrent build never loads half a file
    return library, ""


def avx2_env(base: dict[str, str] | None = None, warn: bool = True) -> dict[str, str]:
    """`base` (default: this process's environment) limited to AVX2 by both layers where possible."""
    env = dict(os.environ if base is None else base) | AVX2_ENV
    library, why = cpuid_library()
    if library is None:
        if warn:
            print(f"warning: AVX2 limit for PyTorch only: {why}; onnxruntime will use AVX-512 if the CPU has it",
                  file=sys.stderr)  # fmt: skip
        env[LIMIT_VAR] = "env"
        return env
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    env[LIMIT_VAR] = "cpuid"
    return env


CHECK = """
import numpy, onnxruntime, torch
from numpy._core._multiarray_umath import __cpu_features__ as features
print(f"torch capability {torch.backends.cpu.get_cpu_capability()}; numpy AVX512F {features['AVX512F']}, "
      f"AVX2 {features['AVX2']}; onnxruntime {onnxruntime.__version__} (chooses from CPUID)")
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="python -m bench.avx2 [--check] [COMMAND [ARG ...]]",
    )  # fmt: skip
    parser.add_argument(
        "--check", action="store_true", help="print what the libraries see, natively and limited"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run limited to AVX2")
    args = parser.parse_args(argv)
    if args.check:
        subprocess.run([sys.executable, "-c", f"print('native:', end=' ')\n{CHECK}"], check=False)
        print("AVX2-limited:", end=" ", flush=True)
        command = [sys.executable, "-c", CHECK]
    elif args.command:
        command = args.command
    else:
        parser.error("give a command to run, or --check")
    os.execvpe(command[0], command, avx2_env())


if __name__ == "__main__":
    main()
