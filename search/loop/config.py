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
    confirm:    {enabled, top, baselines, seeds, split, children}  search.loop.confirm.ConfirmSettings

Anything left out takes its default. ``load_config(path, overrides)`` reads the file (``search.loop.config_yaml``),
applies ``--set key.path=value`` overrides (``search.loop.overrides``), checks every key and type generically
(``search.loop.fields``), then asks each section's ``problems()`` for out-of-range or unknown values. Bad input raises
``search.language.errors.UserError`` with one line naming the field path, e.g. ``child.steps: must be >= 1, got 0``.
Only shapes and ranges are checked, so any run's config loads anywhere; ``check_child_code`` loads what the children
need (the user's module, the table file) and is called by ``run`` before it creates or continues a run.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from controller.settings import ControllerSettings
from evaluator.settings import ChildSettings
from evaluator.tasks import find_task, task_named
from search.language.errors import UserError
from search.language.ops import BINARY, BINARY_BY_NAME, UNARY, UNARY_BY_NAME
from search.language.shadowing import PACKAGES, ROOT, shadowing_problem
from search.language.space import MAX_CORE_UNITS, Space
from search.loop.config_yaml import describe, did_you_mean, read_yaml_file, yaml_scalar
from search.loop.confirm import ConfirmSettings
from search.loop.fidelity import FidelitySettings
from search.loop.fields import build_settings, coerce, field_docs, field_list, raise_first
from search.loop.overrides import apply_override, check_overrides, parse_override
from search.loop.schedule import ScheduleSettings

__all__ = ["Config", "FidelitySettings", "SECTIONS", "RESUMABLE_SECTIONS", "SEARCH_SECTIONS", "SpaceSettings",
           "BudgetSettings",
           "ResourceSettings", "RewardSettings", "load_config", "config_from_dict", "config_with_overrides",
           "check_overrides", "check_resume_overrides", "parse_override", "describe", "field_docs", "derive_seed",
           "child_seed", "retrain_seed", "check_child_code", "ConfirmSettings"]


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

    address: str = ""  # "" = start an embedded local Ray; "auto" = the cluster `ray start` runs on this machine (RAY_ADDRESS, or the one it recorded; never another command's own Ray); "ray://host:10001" (Ray Client) or "host:6379" = an existing cluster
    num_cpus: int = 0  # embedded Ray only: logical CPUs it offers; 0 = every core of this machine
    cpus_per_child: float = 1.0  # logical CPUs a child reserves; match child.threads so children do not fight over cores
    gpus_per_child: float = 0.0  # GPUs a child reserves; a fraction (0.5) lets children share a GPU, which they must then fit in together
    max_in_flight: int = 0  # most children running at once; 0 = as many as the cluster's CPUs / GPUs allow
    max_retries: int = 3  # times Ray reruns a child whose worker or node died (system failures); a child's own errors are never retried
    system_retries: int = 2  # times the driver re-queues a child that failed for the system's reasons (worker lost after max_retries, timeout, data missing on its node) before recording it; such a failure never becomes the function's reward
    child_timeout_s: float = 0.0  # a child running longer is stopped on its worker (a timer's signal; the driver cancels it 30 s later if that failed) and recorded as "timeout"; 0 = 2 x child.time_limit_s + 60 when that is set, else none
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
        if self.metric == "accuracy" and not self.minimize and not out:
            for name in ("screened", "failed"):
                if getattr(self, name) > 1:
                    out.append((name, f"is {getattr(self, name):g}, above any accuracy (at most 1): every candidate "
                                      f"it penalises would outrank every trained child; use 0 (the default)"))
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
    "fidelity": FidelitySettings,
    "schedule": ScheduleSettings,
    "budget": BudgetSettings,
    "resources": ResourceSettings,
    "rewards": RewardSettings,
    "confirm": ConfirmSettings,
}
# Sections a resumed run may change (how much to spend, where to run, how to confirm after the search); the rest
# define the search itself.
RESUMABLE_SECTIONS = ("budget", "resources", "confirm")
SEARCH_SECTIONS = ("seed", "space", "controller", "child", "fidelity", "schedule", "rewards")


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
    confirm: ConfirmSettings = field(default_factory=ConfirmSettings)
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    # not a setting: the folder a run was created in, set by search.loop.rundir.run_config ("" for a config file)
    run_folder = ""

    def problems(self) -> list[tuple[str, str]]:
        """Problems that involve more than one section, as ``(field path, message)``."""
        out: list[tuple[str, str]] = []
        if self.fidelity.rungs and self.fidelity.rungs[-1] >= self.child.steps and find_task(self.child.task) \
                and not find_task(self.child.task).user:
            out.append(("fidelity.rungs", f"a rung at step {self.fidelity.rungs[-1]} is not below child.steps "
                                          f"({self.child.steps}): a child ends there anyway"))
        if not 0 <= self.seed < 2**32:
            out.append(("seed", f"must be in [0, 2**32), got {self.seed}"))
        if self.child.device == "cuda" and self.resources.gpus_per_child == 0:
            out.append(("resources.gpus_per_child", "must be > 0 when child.device is cuda: Ray gives a child no "
                                                    "GPU unless it reserves one"))
        task = find_task(self.child.task)
        if task is not None and task.reports_accuracy and (self.rewards.metric != "accuracy" or self.rewards.minimize):
            out.append(("rewards.metric", f"task {self.child.task} reports accuracy (higher is better): metric must "
                                          f"be accuracy and minimize false; got {self.rewards.metric!r}, minimize "
                                          f"{str(self.rewards.minimize).lower()}"))
        if self.resources.gpus_per_child > 0 and self.child.device == "cpu":
            out.append(("child.device", "is cpu but resources.gpus_per_child reserves GPUs: set device to auto "
                                        "or cuda, or gpus_per_child to 0"))
        out += self.confirm.child_problems(self.child)
        return out

    def search_path(self) -> list[str]:
        """Where a user-defined child's relative file or module is looked for after a process's current directory:
        the directory this process started in, and ``resources.working_dir`` and the ``py_modules`` folders when
        local (the workers of an embedded Ray, or of a cluster on this machine, find the code there), then a run's
        ``run_folder`` (a run resumed from another folder finds the files it was created with)."""
        import os

        out = [os.getcwd()]
        r = self.resources
        for place in [r.working_dir] + [str(Path(m).parent) if Path(m).is_file() else m for m in r.py_modules] \
                + [self.run_folder]:
            if place and "://" not in place and Path(place).is_dir() and str(Path(place).resolve()) not in out:
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
                 f"seed: {yaml_scalar(self.seed)}  # {field_docs(Config).get('seed', '')}".rstrip(" #")]
        for name, cls in SECTIONS.items():
            docs = field_docs(cls)
            lines.append(f"{name}:")
            for key, value in self.to_dict()[name].items():
                doc = docs.get(key)
                lines.append(f"  {key}: {yaml_scalar(value)}" + (f"  # {doc}" if doc else ""))
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


# ---------------------------------------------------------------- loading

def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``None``: all defaults), apply ``key.path=value`` overrides, validate.

    Returns a ``Config``; raises ``UserError`` naming the file or field path and what is allowed. Only shapes and
    ranges are checked: the child's code and table file are loaded by ``check_child_code`` (``run``'s pre-flight).
    """
    raw: Any = {} if path is None else read_yaml_file(Path(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"config {path}: the top level must be a mapping of sections "
                        f"(seed, {', '.join(SECTIONS)}), got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override, SECTIONS)
    return config_from_dict(raw)


def check_child_code(config: Config) -> None:
    """Load what the config's children need beyond their settings, as ``run`` does before it creates or resumes a
    run: ``resources.working_dir`` and ``py_modules`` must exist here and shadow none of actsearch's packages, the
    user's function must import and take the four arguments, the table file must read and hold the functions and seeds
    the run's confirmation replays. ``UserError`` naming the field.
    Read-only commands never call it: inspecting a run needs none of its code."""
    r = config.resources
    local = [m for m in (r.working_dir, *r.py_modules) if m and "://" not in m]
    if r.working_dir in local and not Path(r.working_dir).is_dir():
        raise UserError(f"resources.working_dir: no such folder {r.working_dir!r}")
    for module in r.py_modules:
        if module in local and not Path(module).exists():
            raise UserError(f"resources.py_modules: no such package or file {module!r}")
    # Ray puts the working_dir first on the workers' path, and each py_module under its own name
    problem = shadowing_problem([r.working_dir] if r.working_dir in local else [])
    if problem:
        raise UserError(f"resources.working_dir: {problem}")
    for module in r.py_modules:
        name = Path(module).stem if module.endswith(".py") else Path(module.rstrip("/")).name
        if module in local and name in PACKAGES and Path(module).resolve() != (ROOT / name).resolve():
            raise UserError(f"resources.py_modules: {module} would be imported on the workers instead of actsearch's "
                            f"package {name!r}; rename it")
    task = task_named(config.child.task)
    if task.user:  # imported in a forked process first: a module that exits at import cannot end the command
        from evaluator.user import check_user_function

        check_user_function(config.child.task, config.search_path())
    try:
        task.prepare(config.child, config.search_path())
    except UserError as exc:
        field = "child.table" if task.reads_table else "child.task"
        message = str(exc)
        raise UserError(message if message.startswith(field) else f"{field}: {message}") from None
    if config.confirm.enabled:  # a table replays only the functions and seeds it holds
        from evaluator.activations import activation_label

        problem = task.study_problem(config.child, [activation_label(b) for b in config.confirm.baselines],
                                     config.confirm.seeds, config.search_path())
        if problem:
            raise UserError(f"confirm: {problem}; set confirm.enabled: false to replay the search alone")


def check_resume_overrides(overrides: Sequence[str]) -> None:
    check_overrides(overrides, RESUMABLE_SECTIONS, "a resumed run")


def config_with_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """``config`` with ``--set`` ``overrides`` applied and the result validated (``UserError`` naming the field)."""
    if not overrides:
        return config
    raw = config.to_dict()
    for override in overrides:
        apply_override(raw, override, SECTIONS)
    changed = config_from_dict(raw)
    changed.run_folder = config.run_folder
    return changed


def config_from_dict(raw: dict) -> Config:
    """Build and validate a ``Config`` from a plain mapping (a parsed YAML file). Raises ``UserError``."""
    unknown = [k for k in raw if k != "seed" and k not in SECTIONS]
    if unknown:
        key = str(unknown[0])
        raise UserError(f"{key}: unknown section; allowed: seed, {', '.join(SECTIONS)}"
                        + did_you_mean(key, ["seed", *SECTIONS]))
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    if "seed" in raw:
        kwargs["seed"] = coerce(raw["seed"], hints["seed"], "seed")
    for name, cls in SECTIONS.items():
        data = raw.get(name)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"{name}: must be a mapping of settings ({field_list(cls)}), got {describe(data)}")
        kwargs[name] = build_settings(cls, data, name)
    config = Config(**kwargs)
    raise_first(config.problems(), "")
    return config
