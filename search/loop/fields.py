"""Settings dataclasses read field by field: a section built from a mapping (unknown keys, types: ``coerce``, then
the section's own ``problems()``), and each field's documentation read from its ``#`` comment in the source (what
``Config.to_yaml`` and ``docs/config.md`` show)."""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from typing import Any

from search.language.errors import UserError
from search.loop.config_yaml import describe, did_you_mean

MAX_INT = 10**15  # no setting needs more; bigger integers are refused before any arithmetic on them

_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.+?))?\s*$")
_COMMENT_LINE = re.compile(r"^\s+#\s?(.*?)\s*$")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its documentation: the ``#`` comment on its line, else the comment lines just above it.

    Empty dict when the source is unavailable.
    """
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines():
        comment = _COMMENT_LINE.match(line)
        if comment:
            above.append(comment.group(1))
            continue
        m = _FIELD_LINE.match(line)
        if m and m.group(1) in names and m.group(1) not in docs:
            doc = m.group(2) or " ".join(a for a in above if not a.startswith("--"))
            if doc:
                docs[m.group(1)] = doc
        above = []
    return docs


def build_settings(cls: type, data: dict, path: str) -> Any:
    """An instance of dataclass ``cls`` from ``data``: generic key and type checks, then ``cls.problems()``.

    ``path`` is the section's name, prefixed to every field named in an error.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise UserError(f"{path}.{key}: unknown setting{did_you_mean(str(key), names)}; {path} has: "
                            f"{', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {key: coerce(value, hints[key], f"{path}.{key}") for key, value in data.items()}
    try:
        settings = cls(**values)
    except (TypeError, ValueError) as exc:  # a __post_init__ that validates on its own
        raise UserError(f"{path}: {exc}") from None
    raise_first(settings.problems(), path + ".")
    return settings


def raise_first(problems: list[tuple[str, str]], prefix: str) -> None:
    if problems:
        name, message = problems[0]
        more = f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})" if len(problems) > 1 else ""
        raise UserError(f"{prefix}{name}: {message}{more}")


def coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` as the annotated type ``hint``, or ``UserError`` naming ``path`` and the expected type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(value, inner[0], path)
        raise TypeError(f"unsupported settings type {hint} at {path}")
    if origin is tuple:
        items = value
        if isinstance(value, str):  # "relu, tanh" (or "55, 166") on the command line
            items = [part for part in re.split(r"[,\s]+", value.strip("[]")) if part]
        element = typing.get_args(hint)[0]
        if element is int and isinstance(items, (list, tuple)):  # a list of whole numbers (steps)
            return tuple(coerce(i, int, f"{path}[{k}]") for k, i in enumerate(items))
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise UserError(f"{path}: must be a list of names, got {describe(value)}")
        return tuple(items)
    if hint is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UserError(f"{path}: must be a mapping of names to values, got {describe(value)}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{path}: must be true or false, got {describe(value)}")
    if hint is int:
        number = as_number(value)
        if isinstance(number, float) and number.is_integer() and abs(number) <= MAX_INT:
            number = int(number)
        if not isinstance(number, int):
            raise UserError(f"{path}: must be an integer, got {describe(value)}")
        if abs(number) > MAX_INT:
            raise UserError(f"{path}: must be between {-MAX_INT:.0e} and {MAX_INT:.0e}, got {describe(value)}")
        return number
    if hint is float:
        number = as_number(value)
        try:
            number = None if number is None else float(number)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        if number is None or not math.isfinite(number):
            raise UserError(f"{path}: must be a finite number, got {describe(value)}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML reads an unquoted on / off (yes / no, true / false) as a boolean
            return "on" if value else "off"
        raise UserError(f"{path}: must be a string, got {describe(value)}")
    raise TypeError(f"unsupported settings type {hint} at {path}")


def as_number(value: Any) -> float | int | None:
    """A number from an int, float or numeric string (PyYAML reads ``5e-4`` as a string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            pass
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def is_mapping_field(cls: type, name: str) -> bool:
    """Whether field ``name`` of dataclass ``cls`` holds a mapping (``child.options``)."""
    hint = typing.get_type_hints(cls).get(name)
    return hint is dict or typing.get_origin(hint) is dict
