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
out-of-range or unknown values. Bad input raises ``search.language.errors.UserError`` with one line naming the field path, e.g.
``child.steps: must be >= 1, got 0``.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from controller.settings import ControllerSettings
from evaluator.settings import ChildSettings
from search.language.errors import UserError
from search.language.ops import BINARY, BINARY_BY_NAME, UNARY, UNARY_BY_NAME
from search.language.space import MAX_CORE_UNITS, Space


@dataclass
class SpaceSettings:
    """The search space: how many core units a candidate has, and which unary and binary functions it may use."""

    core_units: int = 1  # core units per candidate: 1 (6,250 token strings, enumerable) or more (the paper's big spaces)
    unary: tuple[str, ...] = tuple(op.name for op in UNARY)  # unary subset by token name (`actsearch space --list`); all 25
    binary: tuple[str, ...] = tuple(op.name for op in BINARY)  # binary subset by token name; all 10

    def problems(self) -> list[tuple[str, str]]:
        """``(field, what is wrong and what is allowed)`` for every bad value; empty when the space is usable."""
        out: list[tuple[str, str]] = []
        if not 1 <= self.core_units <= MAX_CORE_UNITS:
            out.append(("core_units", f"must be from 1 to {MAX_CORE_UNITS}, got {self.core_units}"))
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
        if not 1 <= self.children <= 10**7:
            out.append(("children", f"must be from 1 to 10,000,000, got {self.children}"))
        if self.max_proposals > 10**9:
            out.append(("max_proposals", f"must be at most 1,000,000,000, got {self.max_proposals}"))
        elif self.max_proposals < 0 or 0 < self.max_proposals < self.children:
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
    working_dir: str = ""  # a folder Ray uploads to every worker, which runs in it and imports from it (Ray's runtime_env working_dir): how a user-defined child's code reaches a cluster; "" = none (the embedded Ray's workers find it in the directory the search started in)
    py_modules: tuple[str, ...] = ()  # local packages or module files Ray uploads to every worker and puts on its import path (Ray's runtime_env py_modules)

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not _ADDRESS.match(self.address):
            out.append(("address", f"must be '' (embedded local Ray), 'auto', 'ray://HOST:PORT' or 'HOST:PORT', "
                                   f"got {self.address!r}"))
        if not 0 <= self.num_cpus <= 100_000:
            out.append(("num_cpus", f"must be from 0 (= all cores) to 100,000, got {self.num_cpus}"))
        if not 0 <= self.cpus_per_child <= 1024:
            out.append(("cpus_per_child", f"must be from 0 to 1024, got {self.cpus_per_child}"))
        if not 0 <= self.gpus_per_child <= 64 or (self.gpus_per_child > 1
                                                   and self.gpus_per_child != int(self.gpus_per_child)):
            out.append(("gpus_per_child", f"must be from 0 to 64, and a whole number when above 1, got "
                                          f"{self.gpus_per_child}"))
        if self.cpus_per_child == 0 and self.gpus_per_child == 0 and self.max_in_flight == 0:
            out.append(("cpus_per_child", "is 0 and so is gpus_per_child: set one, or max_in_flight, so the "
                                          "number of children in flight is bounded"))
        if not 0 <= self.max_in_flight <= 100_000:
            out.append(("max_in_flight", f"must be from 0 (= as many as resources allow) to 100,000, got "
                                         f"{self.max_in_flight}"))
        for name in ("max_retries", "system_retries"):
            if not 0 <= getattr(self, name) <= 100:
                out.append((name, f"must be from 0 to 100, got {getattr(self, name)}"))
        if self.child_timeout_s > 10**7:
            out.append(("child_timeout_s", f"must be at most 10,000,000 s, got {self.child_timeout_s}"))
        if self.working_dir and "://" not in self.working_dir and not Path(self.working_dir).is_dir():
            out.append(("working_dir", f"no such folder {self.working_dir!r}"))
        for module in self.py_modules:
            if "://" not in module and not Path(module).exists():
                out.append(("py_modules", f"no such package or file {module!r}"))
        if self.child_timeout_s < 0:
            out.append(("child_timeout_s", f"must be >= 0 (0 = derived from child.time_limit_s), "
                                           f"got {self.child_timeout_s}"))
        return out


@dataclass
class RewardSettings:
    """The reward the controller receives for each candidate: a trained child's ``metric`` when higher is better,
    ``-metric`` when ``minimize`` (so the controller, the store's ranking and the statistics always seek a higher
    reward); tables, the report and significance show the metric itself."""

    screened: float = 0.0  # reward of a candidate the screen rejects (never trained): as bad as a child can do
    failed: float = 0.0  # reward of a child that diverged, failed or timed out
    reject_linear: bool = True  # the screen also rejects linear functions a*x + b (constants and non-finite ones always)
    metric: str = "accuracy"  # the child's metric that is the reward: accuracy for the built-in tasks; for a user-defined child, a key of the dict it returns (val_loss, val_bpc, ...)
    minimize: bool = False  # lower metric is better (a loss, bits per character, perplexity): the reward is -metric, so screened and failed must then be below minus the worst metric a child can score (e.g. -10)

    def problems(self) -> list[tuple[str, str]]:
        out = [(name, f"must be a finite number, got {getattr(self, name)}")
               for name in ("screened", "failed") if not math.isfinite(getattr(self, name))]
        if not re.fullmatch(r"[A-Za-z_][\w.-]*", self.metric):
            out.append(("metric", f"must be a metric's name such as accuracy or val_loss, got {self.metric!r}"))
        if self.minimize and not out:
            for name in ("failed", "screened"):
                if getattr(self, name) >= 0:
                    out.append(("minimize", f"is true, so the reward of a trained child is -{self.metric}, but "
                                            f"rewards.{name} is {getattr(self, name):g}: set {name} (and the other "
                                            f"penalty) below minus the worst {self.metric} a child can score, e.g. -10"))
                    break
        return out

    def reward_of(self, value: float) -> float:
        """The reward of a child whose metric is ``value``."""
        return -value if self.minimize else value

    def metric_of(self, reward: float | None) -> float | None:
        """The metric behind a trained child's ``reward`` (the inverse of ``reward_of``)."""
        return None if reward is None else (-reward if self.minimize else reward)


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
SEARCH_SECTIONS = ("seed", "space", "controller", "child", "rewards")


def derive_seed(*keys: int) -> int:
    """A 31-bit seed from non-negative integer ``keys`` (numpy's ``SeedSequence``): the same keys give the same seed,
    different keys independent ones."""
    import numpy as np

    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


def child_seed(run_seed: int, index: int) -> int:
    """The seed of candidate ``index``'s child: a function of the run seed and the index only, so a resumed run
    trains exactly what an uninterrupted one would have."""
    return derive_seed(run_seed, index)


RETRAIN_STREAM = 7_919  # a key of its own, so re-training seeds never coincide with the search's child seeds


def retrain_seed(run_seed: int, seed_number: int) -> int:
    """The child seed of significance seed number ``seed_number``: shared by every candidate and baseline (that is the
    pairing)."""
    return derive_seed(run_seed, RETRAIN_STREAM, seed_number)


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
        if not 0 <= self.seed < 2**32:
            out.append(("seed", f"must be in [0, 2**32), got {self.seed}"))
        if self.child.device == "cuda" and self.resources.gpus_per_child == 0:
            out.append(("resources.gpus_per_child", "must be > 0 when child.device is cuda: Ray gives a child no "
                                                    "GPU unless it reserves one"))
        from evaluator.user import is_user_task, user_task_problem

        if is_user_task(self.child.task):
            problem = user_task_problem(self.child.task, self.search_path())
            if problem:
                out.append(("child.task", problem))
        if self.child.task == "table" and str(self.child.table).strip():
            from evaluator.tabular import TableError, load_table

            try:
                load_table(self.child.table, self.search_path())
            except TableError as exc:
                out.append(("child.table", str(exc)))
        if not is_user_task(self.child.task) and (self.rewards.metric != "accuracy" or self.rewards.minimize):
            out.append(("rewards.metric", f"task {self.child.task} reports accuracy (higher is better): metric must "
                                          f"be accuracy and minimize false; got {self.rewards.metric!r}, minimize "
                                          f"{str(self.rewards.minimize).lower()}"))
        if self.resources.gpus_per_child > 0 and self.child.device == "cpu":
            out.append(("child.device", "is cpu but resources.gpus_per_child reserves GPUs: set device to auto "
                                        "or cuda, or gpus_per_child to 0"))
        return out

    def search_path(self) -> list[str]:
        """Where a user-defined child's relative file or module is looked for after a process's current directory:
        the directory this process started in, and ``resources.working_dir`` and the ``py_modules`` folders when
        local (the workers of an embedded Ray, or of a cluster on this machine, find the code there)."""
        import os

        out = [os.getcwd()]
        r = self.resources
        for place in [r.working_dir] + [str(Path(m).parent) if Path(m).is_file() else m for m in r.py_modules]:
            if place and "://" not in place and Path(place).is_dir():
                out.append(str(Path(place).resolve()))
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
        if not path.exists():
            raise UserError(f"config {path}: no such file")
        if path.is_dir():
            raise UserError(f"config {path}: is a directory; give a YAML file such as configs/quickstart.yaml")
        try:
            raw = _load_yaml(path.read_text(), f"config {path}")
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


MAX_CONFIG_VALUES = 10_000  # a config is a few dozen values; aliases that expand past this are a bomb, not a config
MAX_INT = 10**15  # no setting needs more; bigger integers are refused before any arithmetic on them


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (the second would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise UserError(f"{self.name}: line {key_node.start_mark.line + 1}: {str(key)[:60]!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _load_yaml(text: str, name: str) -> Any:
    """Parse YAML safely: duplicate keys refused, and aliases may not expand past ``MAX_CONFIG_VALUES`` values."""
    loader = _Loader(text)
    loader.name = name
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if _expanded_size(data) > MAX_CONFIG_VALUES:
        raise UserError(f"{name}: its aliases expand to more than {MAX_CONFIG_VALUES:,} values; write the values out")
    return data


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
        parsed = _load_yaml(value, f"--set {key}") if value.strip() else ""
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
    mapping_field = len(parts) == 3 and _is_mapping_field(SECTIONS[parts[0]], parts[1])  # child.options.NAME=VALUE
    if len(parts) != 2 and not mapping_field:
        raise UserError(f"--set {'.'.join(parts)}: expected SECTION.FIELD=VALUE, e.g. {parts[0]}."
                        f"{dataclasses.fields(SECTIONS[parts[0]])[0].name}=...")
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


def _is_mapping_field(cls: type, name: str) -> bool:
    hint = typing.get_type_hints(cls).get(name)
    return hint is dict or typing.get_origin(hint) is dict


def check_overrides(overrides: Sequence[str], allowed: Sequence[str], who: str) -> None:
    """``UserError`` for the first ``--set`` override outside the ``allowed`` sections; ``who`` says who refuses."""
    for override in overrides:
        section = parse_override(override)[0][0]
        if section not in allowed:
            raise UserError(f"--set {override}: {who} can change only "
                            f"{' and '.join(s + '.*' for s in allowed)} settings")


def check_resume_overrides(overrides: Sequence[str]) -> None:
    check_overrides(overrides, RESUMABLE_SECTIONS, "a resumed run")


def config_with_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """``config`` with ``--set`` ``overrides`` applied and the result validated (``UserError`` naming the field)."""
    if not overrides:
        return config
    raw = config.to_dict()
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


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
            raise UserError(f"{name}: must be a mapping of settings ({_field_list(cls)}), got {describe(data)}")
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
            raise UserError(f"{path}.{key}: unknown setting{_did_you_mean(str(key), names)}; {path} has: "
                            f"{', '.join(names)}")
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
        number = _number(value)
        if isinstance(number, float) and number.is_integer() and abs(number) <= MAX_INT:
            number = int(number)
        if not isinstance(number, int):
            raise UserError(f"{path}: must be an integer, got {describe(value)}")
        if abs(number) > MAX_INT:
            raise UserError(f"{path}: must be between {-MAX_INT:.0e} and {MAX_INT:.0e}, got {describe(value)}")
        return number
    if hint is float:
        number = _number(value)
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
        raise UserError(f"{path}: must be a string, got {describe(value)}")
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


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 4, 4, 60, 60, 40


def describe(value: Any) -> str:
    """A value as an error message shows it: at most about 80 characters, however large or deep the value is."""
    if value is None:
        return "nothing (null)"
    return f"{_SHORT.repr(value)} ({type(value).__name__})"


def _field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _did_you_mean(key: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
