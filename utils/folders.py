"""Output folders, one way for every command: created only after the inputs are checked, writable
or a one-line error naming them.

    check_writable_dir(path)            # before the first output: could it be written? creates nothing
    make_output_dir(path, "run folder") # create it (and its parents), or InputError naming it

predict.py's prediction folders, train.py's run folder, segment.py's output folder and
validate.py's outputs all come through here; what each folder then holds (fingerprints,
overwrite rules) stays with its command.
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.errors import InputError

__all__ = ["check_writable_dir", "make_output_dir"]


def check_writable_dir(path: Path) -> None:
    """InputError unless ``path`` is, or could be created as, a writable folder; creates nothing.

    Lets a command with several outputs fail before writing the first, not after.
    """
    path = Path(path)
    existing = next(p for p in [path, *path.parents] if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise InputError(f"cannot write here: {existing} is not a folder", path)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError("cannot write here: folder not writable", existing)


def make_output_dir(path: Path, what: str = "output folder") -> None:
    """Create `path` (parents too; an existing folder is kept) and check that it is writable.

    `what` names it in the one-line error: "cannot create the run folder (Permission denied)".
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} is a file", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the {what} ({exc.strerror})", path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} is not writable", path)
