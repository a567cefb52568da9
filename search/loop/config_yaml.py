"""The hardened YAML reader behind config files and ``--set`` values, and how a value appears in an error message.

Safe types only; a key given twice in one mapping is refused (the second would silently win); aliases may not expand
past ``MAX_CONFIG_VALUES`` values (a "billion laughs" file is refused, never expanded). Bad input raises ``UserError``
naming the file and line.
"""
from __future__ import annotations

import difflib
import reprlib
from pathlib import Path
from typing import Any, Sequence

import yaml

from search.language.errors import UserError

MAX_CONFIG_VALUES = 10_000  # a config is a few dozen values; aliases that expand past this are a bomb, not a config
MAX_CONFIG_BYTES = 1_000_000  # a config file is a few kB


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (the second would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict, set)):  # ``? [a, b]``: YAML allows it, a config has no such key
                raise UserError(f"{self.name}: line {key_node.start_mark.line + 1}: a key must be a name, got "
                                f"{describe(key)}")
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise UserError(f"{self.name}: line {key_node.start_mark.line + 1}: {str(key)[:60]!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str, name: str) -> Any:
    """Parse YAML safely: duplicate keys refused, and aliases may not expand past ``MAX_CONFIG_VALUES`` values.
    ``name`` starts every error message. Raises ``UserError``, or ``yaml.YAMLError`` for text that is not YAML."""
    loader = _Loader(text)
    loader.name = name
    try:
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
        size = _expanded_size(data)
    except RecursionError:  # [[[[...]]]] thousands deep: PyYAML and the count recurse per level
        raise UserError(f"{name}: nested too deeply to be a config") from None
    if size > MAX_CONFIG_VALUES:
        raise UserError(f"{name}: more than {MAX_CONFIG_VALUES:,} values (aliases counted as expanded); a config is a "
                        f"few dozen")
    return data


def read_yaml_file(path: Path) -> Any:
    """The parsed content of the config file ``path`` (None when empty); ``UserError`` naming the file, and the line
    when the YAML is bad."""
    try:
        if not path.exists():
            raise UserError(f"config {path}: no such file")
        if path.is_dir():
            raise UserError(f"config {path}: is a directory; give a YAML file such as configs/quickstart.yaml")
        if not path.is_file():  # a pipe would block for ever, /dev/zero never end
            raise UserError(f"config {path}: not a regular file")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise UserError(f"config {path}: {size:,} bytes; a config is a few kB (at most {MAX_CONFIG_BYTES:,})")
        text = path.read_text()
    except OSError as exc:  # a name too long, no permission
        raise UserError(f"config {path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path}: not a text file") from None
    try:
        return load_yaml(text, f"config {path}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"config {path}{where}: not valid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path}: not a text file") from None


def _expanded_size(value: Any) -> int:
    """How many values ``value`` holds once every alias is expanded; counted over shared objects, never expanded."""
    sizes: dict[int, int] = {}

    def size(v: Any) -> int:
        if not isinstance(v, (dict, list)):
            return 1
        if id(v) in sizes:
            return sizes[id(v)]
        sizes[id(v)] = MAX_CONFIG_VALUES + 1  # a cycle (a self-referencing alias) counts as too big
        items = list(v.keys()) + list(v.values()) if isinstance(v, dict) else v
        total = 1
        for item in items:
            total += size(item)
            if total > MAX_CONFIG_VALUES:
                break
        sizes[id(v)] = total
        return total

    return size(value)


def yaml_scalar(value: Any) -> str:
    """``value`` as one line of YAML."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 4, 4, 60, 60, 40


def describe(value: Any) -> str:
    """A value as an error message shows it: at most about 80 characters, however large or deep the value is."""
    if value is None:
        return "nothing (null)"
    return f"{_SHORT.repr(value)} ({type(value).__name__})"


def did_you_mean(key: str, options: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``options`` to ``key``; "" when none is close."""
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
