"""User-facing input errors: one line, naming the file and the problem, exit code 2."""

from __future__ import annotations

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
        text = f"{path}: {message}" if path is not None else message
        super().__init__(" ".join(str(text).split()))


def cli_entry(main: F) -> F:
    """Wrap an entry script's main(): InputError -> 'error: ...' on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(EXIT_INPUT_ERROR)

    return wrapper  # type: ignore[return-value]
