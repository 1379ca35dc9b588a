"""Atomic file writes: a temporary sibling, then a rename, so no reader sees half a file.

Every writer of a file another process may read (checkpoints, masks, indexes, configs, the
history, plots, submissions) goes through `atomic_path`; a crash at any moment leaves the old
file or the new one, and a failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from utils.errors import InputError

__all__ = [
    "atomic_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "save_npy_atomic",
    "remove_stale_temp_files",
]

_TEMP_NAME = re.compile(r"\..+\.(\d+)\.tmp(\.\w+)?")  # atomic_path's `.<name>.<pid>.tmp[.<suffix>]`
# A temp file this recent may belong to a process on another machine sharing the folder (shards
# of one prediction run): its pid means nothing here, so only older ones count as left over.
STALE_AFTER_S = 60.0


@contextlib.contextmanager
def atomic_path(path: Path | str, *, fsync: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it.

    fsync: flush the file to disk before the rename (checkpoints: survive a power cut, not
    only a killed process). The temp file is `.<name>.<pid>.tmp`: hidden, one per process, and
    easy to find after a crash; writers that infer a format from the suffix must name it, or
    pass keep_suffix for `.<name>.<pid>.tmp<suffix>` (cv2.VideoWriter picks its container so).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix if keep_suffix else ''}")
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: Path | str, pattern: str = "*", min_age_s: float = STALE_AFTER_S) -> int:
    """Delete atomic_path temp files under `folder` (glob `pattern`) that a dead process left.

    A kill during a write leaves `.<name>.<pid>.tmp`; it is never read, only piles up. Removed
    when no process of that pid runs here and the file is older than `min_age_s`. Returns how many.
    """
    removed = 0
    now = time.time()
    for path in Path(folder).glob(pattern):
        match = _TEMP_NAME.fullmatch(path.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to delete
            if now - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed += 1
    return removed


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to a temp file next to `path`, then rename: the file is whole or absent."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
