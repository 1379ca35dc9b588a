"""The one strict reader of YAML/JSON settings files and the one formatter of their errors.

Every settings file (an experiment config, an ensemble file) goes file -> mapping -> pydantic
model with `extra="forbid"`; whatever is wrong becomes a one-line InputError naming the file
and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from utils.errors import InputError

__all__ = ["read_mapping", "describe_error", "validate"]

M = TypeVar("M", bound=BaseModel)


def read_mapping(path: Path, kind: str, what: str | None = None) -> Any:
    """Parse a YAML (or, by its .json suffix, JSON) file; an empty file reads as {}.

    `kind` names the file in errors ("config file" -> "config file not found"); `what` names it
    in parse errors (default: `kind`).
    """
    if not path.is_file():
        raise InputError(f"{kind} not found", path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"cannot parse {what or kind}: {str(exc).splitlines()[0]}", path) from None
    return data if data is not None else {}


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic error as a line naming the dotted key: unknown key, or bad value and what was given."""
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"bad value for '{key}': {error['msg']} (got {shown})"


def validate(model: type[M], data: Any, source: object) -> M:
    """`model.model_validate(data)`, its first error a one-line InputError naming `source`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe_error(exc.errors()[0]), source) from None
