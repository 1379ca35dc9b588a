"""JSON sidecar files (pseudo.json, teacher.json, model.json, .predict_state.json) read one way:
parsed and checked by a pydantic model, as the settings files are (config/schema.py), with a
one-line error naming the file and the first problem.

    manifest = read_sidecar(path, PseudoManifest, "pseudo-label manifest")
    # error: <dir>/pseudo.json: malformed pseudo-label manifest: 'keys' holds 'S_0/x', not a frame key like 'S_0/3'

Each file's model lives beside the code that writes it; extra keys are kept (model_config
extra="allow"), so a newer writer's additions never make an older reader refuse a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from utils.errors import InputError

__all__ = ["read_sidecar", "read_folder_manifest", "first_problem"]

T = TypeVar("T", bound=BaseModel)


def first_problem(exc: ValidationError) -> str:
    """pydantic's first error in one line: "'field' problem", or a validator's own sentence."""
    error = exc.errors(include_url=False)[0]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "json_invalid":
        return f"not JSON ({error.get('ctx', {}).get('error', message)})"
    if error["type"] == "value_error":  # a validator's sentence names its field itself
        return message
    where = ".".join(str(part) for part in error["loc"])
    return f"'{where}' {message[:1].lower()}{message[1:]}" if where else message


def read_sidecar(path: Path, model: type[T], what: str) -> T:
    """`path` parsed as `model`; InputError("unreadable/malformed <what>: ...", path) otherwise."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable {what} ({type(exc).__name__})", path) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise InputError(f"malformed {what}: {first_problem(exc)}", path) from None


def read_folder_manifest(folder: Path, name: str, model: type[T], what: str, made_by: str) -> T:
    """The manifest `name` of a folder one command writes and another reads (pseudo.json, teacher.json):
    InputError("not a <what> folder: no <name> (make one with <made_by>)", folder) when it has none."""
    path = Path(folder) / name
    if not path.is_file():
        raise InputError(f"not a {what} folder: no {name} (make one with {made_by})", folder)
    return read_sidecar(path, model, f"{what} manifest")
