"""torchrun helpers: process group from the environment, rank-0 checks, reductions.

`torchrun --nproc_per_node=N train.py ...` sets RANK/WORLD_SIZE/LOCAL_RANK; NCCL is used
when the process has a GPU, gloo otherwise (so the same launch works on CPU machines).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from utils.errors import InputError

__all__ = [
    "init_distributed", "is_main", "world_size", "rank", "barrier", "all_gather_cat", "cleanup",
    "from_main", "on_every_rank", "TIMEOUT_S",
]  # fmt: skip

T = TypeVar("T")

# A rank that dies or hangs makes the others fail after this long instead of waiting forever.
# Long enough for rank 0's checks before training (every labelled frame of a fold is read).
TIMEOUT_S = float(os.environ.get("OPENEDS_DIST_TIMEOUT_S", 1800))


def init_distributed(device: torch.device) -> bool:
    """Join the process group if launched by torchrun; returns whether we are distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor's first dimension across ranks (sizes may differ between ranks)."""
    if not dist.is_initialized():
        return tensor
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    local = tensor.to(device)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=device))
    largest = int(max(s.item() for s in sizes))
    padded = torch.zeros((largest, *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    gathered = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes, strict=True)]).to(tensor.device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def from_main(decide: Callable[[], T]) -> T:
    """Run `decide` on rank 0 only and give every rank its result (or its InputError).

    Decisions about files (is there a last.pt to resume? does the folder hold a run?) are made
    once: without a shared filesystem each rank would see its own disk and decide differently.
    """
    if world_size() == 1:
        return decide()
    box: list[object] = [None, None]
    if is_main():
        try:
            box[0] = decide()
        except InputError as exc:
            box[1] = str(exc)
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise InputError(str(box[1]))
    return box[0]  # type: ignore[return-value]


def on_every_rank(load: Callable[[], T]) -> T:
    """Run `load` on every rank; if any rank raises an InputError, every rank raises it.

    A rank that cannot read a file must not leave the others waiting in the first collective
    until the timeout: they all stop now, with the same one line naming the rank.
    """
    error, result = None, None
    try:
        result = load()
    except InputError as exc:
        error = str(exc)
    if world_size() > 1:
        errors: list[object] = [None] * world_size()
        dist.all_gather_object(errors, error)
        failed = [(index, text) for index, text in enumerate(errors) if text is not None]
        if failed:
            index, text = failed[0]
            raise InputError(f"{text} (on rank {index} of {world_size()})")
    if error is not None:
        raise InputError(error)
    return result  # type: ignore[return-value]
