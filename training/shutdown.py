"""SIGTERM (torchrun teardown, SLURM preemption, `kill`) as a request to stop cleanly.

The handler only records the request; the training loop finishes the step it is in, saves
last.pt (mid-epoch if need be: the sampler position, running loss and RNG state travel with it)
and exits with a line that says how to continue. Under torchrun every rank must stop after the
same step, so the ranks agree on the request once per step.
"""

from __future__ import annotations

import shlex
import signal
from types import FrameType

import torch
import torch.distributed as dist

__all__ = ["StopRequest", "EXIT_STOPPED", "resume_command", "ignore_sigterm"]

EXIT_STOPPED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class StopRequest:
    """Set by SIGTERM; `__call__` says whether to stop now (the same answer on every rank)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: object = None

    def install(self) -> StopRequest:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def __call__(self) -> bool:
        requested = self.signal is not None
        if dist.is_initialized() and dist.get_world_size() > 1:
            device = (
                torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
            )
            flag = torch.tensor([float(requested)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            requested = bool(flag.item())
            if requested and self.signal is None:
                self.signal = signal.SIGTERM  # another rank got it
        return requested


def ignore_sigterm(worker_id: int = 0) -> None:
    """DataLoader worker_init_fn: SLURM signals every process of a job, and a worker killed by
    SIGTERM would end the run with a traceback before the main process could save. Workers
    exit with the main process anyway."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def resume_command(argv: list[str]) -> str:
    """The command line that continues this run: the same arguments with --resume auto."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if not arg.startswith("--resume="):
            kept.append(arg)
    return shlex.join(["python", "train.py", *kept, "--resume", "auto"])
