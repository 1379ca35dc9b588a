"""User-facing input errors: one line, naming the file and the problem, exit code 2."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import TypeVar

__all__ = ["InputError", "cli_entry", "EXIT_INPUT_ERROR"]

EXIT_INPUT_ERROR = 2

F = TypeVar("F", bound=Callable[..., object])


class InputError(Exception):
    """Bad input from the user (a file, a config value, a checkpoint).

    The message is one line and names the offending file or key; entry scripts print it
    without a traceback and exit with code 2.
    """

    def __init__(self, message: str, path: object | None = None) -> None:
        text = f"{path}: {message}" if path is not None else _unwrap_worker_message(str(message))
        super().__init__(" ".join(str(text).split()))


def _unwrap_worker_message(text: str) -> str:
    """The original message of an InputError that torch re-raised from a DataLoader worker.

    torch rebuilds a worker's exception as ``InputError("Caught InputError in DataLoader worker
    process 0.\nOriginal Traceback ...\nutils.errors.InputError: <message>")``; keeping only
    <message> makes a bad file found by a worker the same one clean line as with workers=0.
    """
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    last = text.rstrip().rsplit("\n", 1)[-1]  # "utils.errors.InputError: <message>"
    return last.split(": ", 1)[1] if ": " in last else last


def _error_line(line: str) -> None:
    """One write of the whole line: under torchrun every rank may report at once on one stderr,
    and print()'s separate writes of the text and the newline would interleave their lines."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def cli_entry(main: F) -> F:
    """Wrap an entry script's main(): InputError (and a full disk) -> 'error: ...' on stderr, exit 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except InputError as exc:
            _error_line(f"error: {exc}")
            sys.exit(EXIT_INPUT_ERROR)
        except OSError as exc:
            # A full disk is the one OSError every writer can meet: one line naming the file,
            # like bad input (writes are atomic, so nothing half-written is left).
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            _error_line(f"error: {exc.filename or 'write'}: no space left on device ({exc.strerror})")
            sys.exit(EXIT_INPUT_ERROR)

    return wrapper  # type: ignore[return-value]
