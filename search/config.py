"""The search config: a YAML file read into typed, validated settings with documented defaults.

A config has a top-level ``seed`` and six sections, each a dataclass whose fields carry a ``#`` comment saying what they
are and why the default::

    seed: 0
    space:      {core_units, unary, binary}                        SpaceSettings (here)
    controller: {kind, ...every proposer knob}                     controller.settings.ControllerSettings
    child:      {task, model, steps, batch_size, ...}              evaluator.settings.ChildSettings
    budget:     {children, max_proposals}                          BudgetSettings (here)
    resources:  {address, cpus_per_child, gpus_per_child, ...}     ResourceSettings (here)
    rewards:    {screened, failed, reject_linear}                  RewardSettings (here)

Anything left out takes its default. ``load_config(path, overrides)`` applies ``--set key.path=value`` overrides (values
parsed as YAML scalars), checks every key and type generically, then asks each section's ``problems()`` for
out-of-range or unknown values. Bad input raises ``search.cli.UserError`` with one line naming the field path, e.g.
``child.steps: must be >= 1, got 0``.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from controller.settings import ControllerSettings
from evaluator.settings import ChildSettings
from search.cli import UserError
from search.ops import BINARY, BINARY_BY_NAME, UNARY, UNARY_BY_NAME
from search.space import Space


@dataclass
class SpaceSettings:
    """The search space: how many core units a candidate has, and which unary and binary functions it may use."""

    core_units: int = 1  # core units per candidate: 1 (6,250 token strings, enumerable) or more (the paper's big spaces)
    unary: tuple[str, ...] = tuple(op.name for op in UNARY)  # unary subset by token name (`actsearch space --list`); all 25
    binary: tuple[str, ...] = tuple(op.name for op in BINARY)  # binary subset by token name; all 10

    def problems(self) -> list[tuple[str, str]]:
        """``(field, what is wrong and what is allowed)`` for every bad value; empty when the space is usable."""
        out: list[tuple[str, str]] = []
        if self.core_units < 1:
            out.append(("core_units", f"must be >= 1, got {self.core_units}"))
        for name, names, table in (("unary", self.unary, UNARY_BY_NAME), ("binary", self.binary, BINARY_BY_NAME)):
            unknown = [n for n in names if n not in table]
            if unknown:
                out.append((name, f"unknown {name} operator {unknown[0]!r}; allowed: {', '.join(table)}"))
            elif not names:
                out.append((name, f"must list at least one {name} operator"))
            elif len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                out.append((name, f"lists {twice!r} twice"))
        return out

    def build(self) -> Space:
        """The ``Space`` these settings describe."""
        return Space(core_units=self.core_units, unary=self.unary, binary=self.binary)


@dataclass
class BudgetSettings:
    """How much the search may spend."""

    children: int = 100  # children trained (= candidates evaluated); screened and duplicate candidates cost nothing
    max_proposals: int = 0  # stop after this many proposals even if children remain (a controller stuck on duplicates); 0 = 50 x children

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.children < 1:
            out.append(("children", f"must be >= 1, got {self.children}"))
        if self.max_proposals < 0 or 0 < self.max_proposals < self.children:
            out.append(("max_proposals", f"must be 0 (= 50 x children) or >= children ({self.children}), "
                                         f"got {self.max_proposals}"))
        return out

    @property
    def proposal_limit(self) -> int:
        """``max_proposals`` with 0 resolved."""
        return self.max_proposals or 50 * self.children


_ADDRESS = re.compile(r"^(|auto|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")


@dataclass
class ResourceSettings:
    """Where children run and what each one reserves (Ray logical resources)."""

    address: str = ""  # "" = start an embedded local Ray; "auto" = the running cluster of this machine; "ray://host:10001" (Ray Client) or "host:6379" = an existing cluster
    num_cpus: int = 0  # embedded Ray only: logical CPUs it offers; 0 = every core of this machine
    cpus_per_child: float = 1.0  # logical CPUs a child reserves; match child.threads so children do not fight over cores
    gpus_per_child: float = 0.0  # GPUs a child reserves; a fraction (0.5) lets children share a GPU, which they must then fit in together
    max_in_flight: int = 0  # most children running at once; 0 = as many as the cluster's CPUs / GPUs allow
    max_retries: int = 3  # times Ray reruns a child whose worker or node died (system failures); a child's own errors are never retried
    system_retries: int = 2  # times the driver re-queues a child that failed for the system's reasons (worker lost after max_retries, timeout, data missing on its node) before recording it; such a failure never becomes the function's reward
    child_timeout_s: float = 0.0  # the driver cancels a child running longer and records "timeout"; 0 = 2 x child.time_limit_s + 60 when that is set, else none

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not _ADDRESS.match(self.address):
            out.append(("address", f"must be '' (embedded local Ray), 'auto', 'ray://HOST:PORT' or 'HOST:PORT', "
                                   f"got {self.address!r}"))
        if self.num_cpus < 0:
            out.append(("num_cpus", f"must be >= 0 (0 = all cores), got {self.num_cpus}"))
        if self.cpus_per_child < 0:
            out.append(("cpus_per_child", f"must be >= 0, got {self.cpus_per_child}"))
        if self.gpus_per_child < 0 or (self.gpus_per_child > 1 and self.gpus_per_child != int(self.gpus_per_child)):
            out.append(("gpus_per_child", f"must be >= 0, and a whole number when above 1, got {self.gpus_per_child}"))
        if self.cpus_per_child == 0 and self.gpus_per_child == 0 and self.max_in_flight == 0:
            out.append(("cpus_per_child", "is 0 and so is gpus_per_child: set one, or max_in_flight, so the "
                                          "number of children in flight is bounded"))
        if self.max_in_flight < 0:
            out.append(("max_in_flight", f"must be >= 0 (0 = as many as resources allow), got {self.max_in_flight}"))
        if self.max_retries < 0:
            out.append(("max_retries", f"must be >= 0, got {self.max_retries}"))
        if self.system_retries < 0:
            out.append(("system_retries", f"must be >= 0, got {self.system_retries}"))
        if self.child_timeout_s < 0:
            out.append(("child_timeout_s", f"must be >= 0 (0 = derived from child.time_limit_s), "
                                           f"got {self.child_timeout_s}"))
        return out


@dataclass
class RewardSettings:
    """The reward the controller receives for each candidate (a trained child's reward is its accuracy)."""

    screened: float = 0.0  # reward of a candidate the screen rejects (never trained): as bad as a child can do
    failed: float = 0.0  # reward of a child that diverged, failed or timed out
    reject_linear: bool = True  # the screen also rejects linear functions a*x + b (constants and non-finite ones always)

    def problems(self) -> list[tuple[str, str]]:
        return [(name, f"must be a finite number, got {getattr(self, name)}")
                for name in ("screened", "failed") if not math.isfinite(getattr(self, name))]


SECTIONS: dict[str, type] = {
    "space": SpaceSettings,
    "controller": ControllerSettings,
    "child": ChildSettings,
    "budget": BudgetSettings,
    "resources": ResourceSettings,
    "rewards": RewardSettings,
}
# Sections a resumed run may change (how much to spend and where to run); the rest define the search itself.
RESUMABLE_SECTIONS = ("budget", "resources")


@dataclass
class Config:
    """A whole search config: ``seed`` and one settings object per section."""

    seed: int = 0  # seeds the controller; with a candidate's index it also gives the child's seed
    space: SpaceSettings = field(default_factory=SpaceSettings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    child: ChildSettings = field(default_factory=ChildSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    rewards: RewardSettings = field(default_factory=RewardSettings)

    def problems(self) -> list[tuple[str, str]]:
        """Problems that involve more than one section, as ``(field path, message)``."""
        out: list[tuple[str, str]] = []
        if self.seed < 0:
            out.append(("seed", f"must be >= 0, got {self.seed}"))
        if self.child.device == "cuda" and self.resources.gpus_per_child == 0:
            out.append(("resources.gpus_per_child", "must be > 0 when child.device is cuda: Ray gives a child no "
                                                    "GPU unless it reserves one"))
        if self.resources.gpus_per_child > 0 and self.child.device == "cpu":
            out.append(("child.device", "is cpu but resources.gpus_per_child reserves GPUs: set device to auto "
                                        "or cuda, or gpus_per_child to 0"))
        return out

    def to_dict(self) -> dict:
        """Plain nested dict (tuples as lists), the form written to ``config.yaml``."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in SECTIONS:
            out[name] = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(getattr(self, name)).items()}
        return out

    def to_yaml(self, comments: bool = True) -> str:
        """YAML text of every setting; with ``comments`` each field carries its documentation as a trailing comment."""
        if not comments:
            return yaml.safe_dump(self.to_dict(), sort_keys=False)
        lines = ["# Resolved actsearch search config: every setting, defaults filled in.",
                 f"seed: {_yaml_scalar(self.seed)}  # {field_docs(Config).get('seed', '')}".rstrip(" #")]
        for name, cls in SECTIONS.items():
            docs = field_docs(cls)
            lines.append(f"{name}:")
            for key, value in self.to_dict()[name].items():
                doc = docs.get(key)
                lines.append(f"  {key}: {_yaml_scalar(value)}" + (f"  # {doc}" if doc else ""))
        return "\n".join(lines) + "\n"

    def section_differences(self, other: "Config", sections: Sequence[str]) -> list[tuple[str, Any, Any]]:
        """``(field path, self's value, other's value)`` for each field that differs within ``sections``."""
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for section in sections:
            if section == "seed":
                if mine["seed"] != theirs["seed"]:
                    out.append(("seed", mine["seed"], theirs["seed"]))
                continue
            for key, value in mine[section].items():
                if theirs[section].get(key) != value:
                    out.append((f"{section}.{key}", value, theirs[section].get(key)))
        return out


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


# ---------------------------------------------------------------- field documentation

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


# ---------------------------------------------------------------- loading

def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``None``: all defaults), apply ``key.path=value`` overrides, validate.

    Returns a ``Config``; raises ``UserError`` naming the file or field path and what is allowed.
    """
    raw: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config {path}: no such file")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"config {path}{where}: not valid YAML: {problem}") from None
        except UnicodeDecodeError:
            raise UserError(f"config {path}: not a text file") from None
        if raw is None:
            raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"config {path}: the top level must be a mapping of sections "
                        f"(seed, {', '.join(SECTIONS)}), got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"child.steps=500"`` -> ``(["child", "steps"], 500)``: the value is parsed as a YAML scalar or flow list."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. child.steps=500")
    parts = key.split(".")
    if any(not p for p in parts):
        raise UserError(f"--set {text!r}: {key!r} is not a dotted key path like child.steps")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise UserError(f"--set {key}: cannot read {value!r} as a YAML value") from None
    if isinstance(parsed, dict):
        raise UserError(f"--set {key}: give one value per --set, not a mapping")
    return parts, parsed


def apply_override(raw: dict, text: str) -> None:
    """Apply one ``key.path=value`` override to the raw config mapping, in place."""
    parts, value = parse_override(text)
    if parts[0] == "seed":
        if len(parts) != 1:
            raise UserError(f"--set {'.'.join(parts)}: seed is a single value, not a section")
        raw["seed"] = value
        return
    if parts[0] not in SECTIONS:
        raise UserError(f"--set {'.'.join(parts)}: unknown section {parts[0]!r}; "
                        f"allowed: seed, {', '.join(SECTIONS)}" + _did_you_mean(parts[0], ["seed", *SECTIONS]))
    if len(parts) != 2:
        raise UserError(f"--set {'.'.join(parts)}: expected SECTION.FIELD=VALUE, e.g. {parts[0]}."
                        f"{dataclasses.fields(SECTIONS[parts[0]])[0].name}=...")
    section = raw.get(parts[0])
    if section is None:
        section = raw[parts[0]] = {}
    if not isinstance(section, dict):
        raise UserError(f"{parts[0]}: must be a mapping of settings, got {type(section).__name__}")
    section[parts[1]] = value


def config_from_dict(raw: dict) -> Config:
    """Build and validate a ``Config`` from a plain mapping (a parsed YAML file). Raises ``UserError``."""
    unknown = [k for k in raw if k != "seed" and k not in SECTIONS]
    if unknown:
        key = str(unknown[0])
        raise UserError(f"{key}: unknown section; allowed: seed, {', '.join(SECTIONS)}"
                        + _did_you_mean(key, ["seed", *SECTIONS]))
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    if "seed" in raw:
        kwargs["seed"] = _coerce(raw["seed"], hints["seed"], "seed")
    for name, cls in SECTIONS.items():
        data = raw.get(name)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"{name}: must be a mapping of settings ({_field_list(cls)}), got {_describe(data)}")
        kwargs[name] = build_settings(cls, data, name)
    config = Config(**kwargs)
    _raise_first(config.problems(), "")
    return config


def build_settings(cls: type, data: dict, path: str) -> Any:
    """An instance of dataclass ``cls`` from ``data``: generic key and type checks, then ``cls.problems()``.

    ``path`` is the section's name, prefixed to every field named in an error.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise UserError(f"{path}.{key}: unknown setting; {path} has: {', '.join(names)}"
                            + _did_you_mean(str(key), names))
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(value, hints[key], f"{path}.{key}") for key, value in data.items()}
    try:
        settings = cls(**values)
    except (TypeError, ValueError) as exc:  # a __post_init__ that validates on its own
        raise UserError(f"{path}: {exc}") from None
    _raise_first(settings.problems(), path + ".")
    return settings


def _raise_first(problems: list[tuple[str, str]], prefix: str) -> None:
    if problems:
        name, message = problems[0]
        more = f" (and {len(problems) - 1} more problem{'s' * (len(problems) > 2)})" if len(problems) > 1 else ""
        raise UserError(f"{prefix}{name}: {message}{more}")


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` as the annotated type ``hint``, or ``UserError`` naming ``path`` and the expected type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], path)
        raise TypeError(f"unsupported settings type {hint} at {path}")
    if origin is tuple:
        items = value
        if isinstance(value, str):  # "relu, tanh" on the command line
            items = [part for part in re.split(r"[,\s]+", value) if part]
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise UserError(f"{path}: must be a list of names, got {_describe(value)}")
        return tuple(items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{path}: must be true or false, got {_describe(value)}")
    if hint is int:
        number = _number(value)
        if number is None or not float(number).is_integer() or not math.isfinite(number):
            raise UserError(f"{path}: must be an integer, got {_describe(value)}")
        return int(number)
    if hint is float:
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise UserError(f"{path}: must be a finite number, got {_describe(value)}")
        return float(number)
    if hint is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{path}: must be a string, got {_describe(value)}")
    raise TypeError(f"unsupported settings type {hint} at {path}")


def _number(value: Any) -> float | int | None:
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


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({type(value).__name__})"


def _field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _did_you_mean(key: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
