"""What this machine runs fast: the rule behind `cpu_bf16: auto`, `channels_last: auto` and
predict_ensemble.py's `--precision auto`.

bf16 autocast pays on a CPU only where its matrix units take bf16 natively. Elsewhere (AVX2
laptops, AMD Zen 2/3, older Xeons, ARM without tested kernels) PyTorch runs it on a slow
emulated path, many times slower than fp32 (BENCHMARKS.md, "Every CPU"). The probes are
torch's own: `torch.cpu.get_capabilities()` (what the silicon has) and
`torch.backends.cpu.get_cpu_capability()` (what ATen dispatches to, which
ATEN_CPU_CAPABILITY can lower), plus oneDNN's ONEDNN_MAX_CPU_ISA cap, so a run limited to
AVX2 on a big Xeon chooses what a real AVX2 machine would.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

__all__ = ["Choice", "native_bf16", "bf16_choice", "channels_last_choice", "cpu_summary"]

Setting = bool | str  # true, false or "auto"

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still allow AMX; any other value forbids it.
_AMX_ISAS = ("", "ALL", "DEFAULT")


@dataclass(frozen=True)
class Choice:
    """A resolved switch and the reason, printed in the run's log and saved in its config."""

    value: bool
    reason: str


def native_bf16() -> Choice:
    """Whether this CPU runs bf16 matrix products natively (AMX-BF16), as torch would use it.

    AVX512-BF16 alone does not count: on such a Xeon (no AMX) bf16 autocast trained no faster
    than fp32 (BENCHMARKS.md), so it would cost accuracy for nothing.
    """
    caps = torch.cpu.get_capabilities()
    if caps.get("architecture") not in ("x86_64", "x86", "AMD64"):
        return Choice(
            False, f"{caps.get('architecture', 'this')} CPU: bf16 speed not measured here, fp32 is safe"
        )
    if not (caps.get("amx_bf16") and caps.get("amx_tile")):
        extra = " (AVX512-BF16 only: measured no faster than fp32)" if caps.get("avx512_bf16") else ""
        return Choice(False, f"no AMX-BF16 on this CPU{extra}")
    dispatch = torch.backends.cpu.get_cpu_capability()
    if not dispatch.startswith("AVX512"):
        return Choice(False, f"AMX present but torch dispatch limited to {dispatch} (ATEN_CPU_CAPABILITY)")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa not in _AMX_ISAS and "AMX" not in isa:
        return Choice(False, f"AMX present but oneDNN limited to {isa} (ONEDNN_MAX_CPU_ISA)")
    return Choice(True, "AMX-BF16 on this CPU")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def bf16_choice(setting: Setting, device: torch.device) -> Choice:
    """cpu_bf16 (or --precision bf16 on a CPU) resolved for this machine; warns when forced slow."""
    if device.type != "cpu":
        return Choice(False, f"not a CPU run ({device.type})")
    native = native_bf16()
    if setting == "auto":
        return Choice(native.value, f"auto: {native.reason}")
    if setting and not native.value:
        _warn(
            f"bf16 on a CPU without native bf16 matrix instructions ({native.reason}): "
            "it will run many times slower than fp32; use auto or false"
        )
    return Choice(bool(setting), "set explicitly")


def channels_last_choice(setting: Setting, device: torch.device) -> Choice:
    """channels_last resolved: on for CUDA and x86 CPUs (measured faster there), off elsewhere."""
    if setting != "auto":
        return Choice(bool(setting), "set explicitly")
    if device.type == "cuda":
        return Choice(True, "auto: CUDA")
    caps = torch.cpu.get_capabilities()
    if device.type == "cpu" and caps.get("avx2"):
        return Choice(True, "auto: x86 CPU with AVX2 (NHWC measured faster, AVX2 and AVX-512 alike)")
    return Choice(False, f"auto: not measured on {caps.get('architecture', 'this')} CPUs")


def cpu_summary() -> str:
    """One line naming the CPU features that matter here, for logs and benchmark rows."""
    caps = torch.cpu.get_capabilities()
    flags = [name for name in ("avx2", "avx512_f", "avx512_bf16", "amx_bf16") if caps.get(name)]
    return f"{caps.get('cpu_name', 'cpu')} [{' '.join(flags) or caps.get('architecture', '?')}] dispatch {torch.backends.cpu.get_cpu_capability()}"
