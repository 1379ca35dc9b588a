"""Atomic file writes: a temporary sibling, then a rename, so no reader sees half a file.

Every writer of a file another process may read (checkpoints, masks, indexes, configs, the
history, plots, submissions) goes through `atomic_path`; a crash at any moment leaves the old
file or the new one, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from utils.errors import InputError

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: Path | str, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it.

    fsync: flush the file to disk before the rename (checkpoints: survive a power cut, not
    only a killed process). The temp file is `.<name>.<pid>.tmp`: hidden, one per process, and
    easy to find after a crash; writers that infer a format from the suffix must name it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        # suppress: under a path that is not a folder, unlink fails too (NotADirectoryError).
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes, what: str = "") -> None:
    """Write `data` to `path` atomically; an OSError becomes a one-line InputError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise InputError(f"cannot write{' ' + what if what else ''} ({exc.strerror})", path) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (OSError propagates)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
