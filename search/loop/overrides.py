"""``--set KEY.PATH=VALUE`` overrides: the value read as YAML, applied to a raw config mapping before it is checked,
and limited to the sections a command may change."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import yaml

from search.language.errors import UserError
from search.loop.config_yaml import describe, did_you_mean, load_yaml
from search.loop.fields import is_mapping_field


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"child.steps=500"`` -> ``(["child", "steps"], 500)``: the value is parsed as a YAML scalar, flow list or flow
    mapping (a mapping only as one entry of a mapping field, e.g. ``confirm.children.longer={steps: 1500}``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. child.steps=500")
    parts = key.split(".")
    if any(not p for p in parts):
        raise UserError(f"--set {text!r}: {key!r} is not a dotted key path like child.steps")
    try:
        parsed = load_yaml(value, f"--set {key}") if value.strip() else ""
    except yaml.YAMLError:
        raise UserError(f"--set {key}: cannot read {value!r} as a YAML value") from None
    return parts, parsed


def apply_override(raw: dict, text: str, sections: dict[str, type]) -> None:
    """Apply one ``key.path=value`` override to the raw config mapping, in place. ``sections``: section name ->
    settings dataclass (``search.loop.config.SECTIONS``)."""
    parts, value = parse_override(text)
    if parts[0] == "seed":
        if len(parts) != 1:
            raise UserError(f"--set {'.'.join(parts)}: seed is a single value, not a section")
        raw["seed"] = value
        return
    if parts[0] not in sections:
        raise UserError(f"--set {'.'.join(parts)}: unknown section {parts[0]!r}; "
                        f"allowed: seed, {', '.join(sections)}" + did_you_mean(parts[0], ["seed", *sections]))
    mapping_field = len(parts) == 3 and is_mapping_field(sections[parts[0]], parts[1])  # child.options.NAME=VALUE
    cleared = len(parts) == 2 and value == {} and is_mapping_field(sections[parts[0]], parts[1])  # child.options={}
    if isinstance(value, dict) and not mapping_field and not cleared:
        raise UserError(f"--set {'.'.join(parts)}: give one value per --set, not a mapping")
    if len(parts) != 2 and not mapping_field:
        raise UserError(f"--set {'.'.join(parts)}: expected SECTION.FIELD=VALUE, e.g. {parts[0]}."
                        f"{dataclasses.fields(sections[parts[0]])[0].name}=...")
    section = _mapping_in(raw, parts[0], "must be a mapping of settings")
    if mapping_field:
        section = _mapping_in(section, parts[1], "must be a mapping of names to values", parts[0] + ".")
    section[parts[-1]] = value


def _mapping_in(parent: dict, key: str, what: str, prefix: str = "") -> dict:
    """``parent[key]``, made an empty mapping when missing; ``UserError`` when it holds something else."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise UserError(f"{prefix}{key}: {what}, got {describe(value)}")
    return value


def check_overrides(overrides: Sequence[str], allowed: Sequence[str], who: str) -> None:
    """``UserError`` for the first ``--set`` override outside the ``allowed`` sections; ``who`` says who refuses."""
    for override in overrides:
        section = parse_override(override)[0][0]
        if section not in allowed:
            raise UserError(f"--set {override}: {who} can change only "
                            f"{' and '.join(s + '.*' for s in allowed)} settings")
