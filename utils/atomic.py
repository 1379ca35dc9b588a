"""Atomic file writes: a temporary sibling, then a rename, so no reader sees half a file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from utils.errors import InputError

__all__ = ["write_bytes_atomic"]


def write_bytes_atomic(path: Path, data: bytes, what: str = "") -> None:
    """Write `data` to `path` atomically; an OSError becomes a one-line InputError naming the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        # suppress: under a path that is not a folder, unlink fails too (NotADirectoryError),
        # and that would replace the one-line error below with a traceback.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write{' ' + what if what else ''} ({exc.strerror})", path) from None
