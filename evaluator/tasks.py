"""The child tasks, one class each, found by name in ``TASKS`` (``child.task``); a user's ``"module:function"`` or
``"file.py:function"`` is a ``UserTask``. A task owns the checks of its part of the ``child:`` section (shapes and
ranges only), what it loads before a child runs (``prepare``: a table file, a user's module), and how it scores a
child that is not trained by ``evaluator.train``'s own loop (``evaluate``).

    task = task_named("table")            # UserError listing the valid names when there is no such task
    task.problems(settings)               # [(field, what is wrong)]: no file is read, no code imported
    task.prepare(settings, search_path)   # loads the table / the user's function; UserError naming it
"""
from __future__ import annotations

import math
import random
import time
from typing import Sequence

from evaluator.result import ChildResult
from evaluator.synthetic import evaluate_synthetic, synthetic_target_problem
from evaluator.table_file import load_table, replay_child, study_problem as table_study_problem
from evaluator.user import is_user_task, load_user_function
from search.language.errors import UserError

IMAGE_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "preact_resnet164", "wrn_28_10")
CIFAR_TRAIN_IMAGES = 50_000
Problems = list[tuple[str, str]]


class Task:
    """A built-in task: the models it trains, the data it loads, and the checks of its settings. ``s`` is the
    ``ChildSettings`` (not imported here: it imports this registry)."""

    name = ""
    models: tuple[str, ...] = ("none",)  # models it accepts besides auto; the first is what auto means
    dataset: str | None = None  # the built-in dataset evaluator.data loads for it; None: no training here
    num_classes = 0
    images = False  # image batches: augmentation, channels_last
    held_out = True  # scored on examples held out of the training data (split val needs val_size >= 1)
    retrains_on_split = True  # significance re-trains it on the test split (a table and the synthetic task cannot)
    reports_accuracy = True  # its metric is accuracy, higher is better (a user's child names its own)
    reads_table = False
    user = False  # a user's function, trained by evaluator.train.train_user_child

    def problems(self, s) -> Problems:
        """``(field, what is wrong)`` for this task's settings; nothing is loaded."""
        out: Problems = []
        if s.model != "auto" and s.model not in self.models:
            out.append(("model", f"task {self.name} trains one of auto, {', '.join(self.models)}; got {s.model!r}"))
        if s.options:
            out.append(("options", f"only a user-defined child (task MODULE:FUNCTION) takes options; task "
                                   f"{self.name} got {sorted(s.options)[:3]} (--set 'child.options={{}}' clears "
                                   f"them)"))
        if str(s.table).strip() and not self.reads_table:
            out.append(("table", f"only task table reads a table; task {self.name} got table {s.table!r}"))
        if self.held_out and s.split == "val" and s.val_size == 0:
            out.append(("val_size", "must be >= 1 when split is val (the accuracy is measured on it)"))
        return out

    def prepare(self, s, search_path: Sequence[str] | None = None) -> None:
        """Load what a child needs beyond its settings (a table, a user's function); ``UserError`` naming it."""

    def study_problem(self, s, activations: Sequence[str], seeds: int,
                      search_path: Sequence[str] | None = None) -> str | None:
        """Why a significance study of ``activations`` over ``seeds`` paired seeds cannot be scored by this task, or
        None (a table holds only its functions and its seeds)."""
        return None

    def evaluate(self, s, activation: str, seed: int, search_path: Sequence[str] | None = None,
                 report=None) -> ChildResult | None:
        """The result of a child this task scores itself; None where ``train_child`` trains the network. ``report``:
        early stopping's reporter (``train_child``), or None."""
        return None

    def train_size(self, s) -> int:
        """Training examples when ``train_size`` is 0."""
        return 0


class Mnist1dTask(Task):
    """The offline proxy: a small 1-D CNN on generated mnist1d signals."""

    name, models, dataset, num_classes = "mnist1d", ("cnn1d",), "mnist1d", 10

    def train_size(self, s) -> int:
        return 4_000  # generated signals


class CifarTask(Task):
    """CIFAR-10 or CIFAR-100 through torchvision, a ResNet child."""

    models, dataset, images = IMAGE_MODELS, "cifar", True

    def __init__(self, name: str, num_classes: int):
        self.name, self.num_classes = name, num_classes

    def problems(self, s) -> Problems:
        out = super().problems(s)
        if s.train_size + s.val_size > CIFAR_TRAIN_IMAGES:
            out.append(("train_size", f"train_size + val_size must be <= {CIFAR_TRAIN_IMAGES:,} "
                                      f"(CIFAR's training images), got {s.train_size} + {s.val_size}"))
        elif s.val_size >= CIFAR_TRAIN_IMAGES:  # train_size 0: the rest, and nothing is left
            out.append(("val_size", f"must leave training images: below {CIFAR_TRAIN_IMAGES:,} (CIFAR's training "
                                    f"images), got {s.val_size:,}"))
        return out

    def train_size(self, s) -> int:
        return CIFAR_TRAIN_IMAGES - s.val_size  # every image not held out


_ENTROPY = random.SystemRandom()  # the synthetic child's delays: no seed may fix the order children end in


class SyntheticTask(Task):
    """No training: a function's similarity to ``child.target`` is its reward (tests the search)."""

    name, held_out, retrains_on_split = "synthetic", False, False

    def problems(self, s) -> Problems:
        out = super().problems(s)
        problem = synthetic_target_problem(s.target) if isinstance(s.target, str) else None
        if problem:
            out.append(("target", problem))
        return out

    def evaluate(self, s, activation, seed, search_path=None, report=None):
        time.sleep(s.delay_s * (1 + s.delay_spread * (2 * _ENTROPY.random() - 1)))  # time, without training
        result = evaluate_synthetic(activation, target=s.target, noise=s.noise, seed=seed, split=s.split)
        if result.status == "ok":
            result.steps = s.steps  # nominal: the steps a trained child would have taken (what early stopping saves)
        if report is not None and result.status == "ok":  # its score is known at once: the same at every rung
            for step in report.rungs:
                if not report(step, result.accuracy):
                    return ChildResult.stopped(result.activation, seed, result.accuracy, report.stopped_at[0], step,
                                               split=s.split, device="cpu", wall_s=result.wall_s)
        return result


class TableTask(Task):
    """Replays a tabular benchmark (``child.table``): a child looks its function up and returns a recorded seed."""

    name, retrains_on_split, reads_table = "table", False, True

    def problems(self, s) -> Problems:
        out = super().problems(s)
        if not str(s.table).strip():
            out.append(("table", "task table replays a table file: name it, e.g. table: tables/mnist1d-150.json"))
        return out

    def prepare(self, s, search_path=None):
        load_table(s.table, search_path)

    def study_problem(self, s, activations, seeds, search_path=None):
        return table_study_problem(load_table(s.table, search_path), activations, seeds)

    def evaluate(self, s, activation, seed, search_path=None, report=None):
        return replay_child(s.table, activation, seed, s.split, search_path, report)


def _unstorable(value, where: str = "options") -> str | None:
    """Where ``value`` (a user child's options) holds what JSON cannot keep as it is: a non-finite number, a date,
    bytes, a key that is no string (JSON would turn 1 into "1": the run's stored config would differ from its own);
    None when it all keeps."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where}: key {key!r} is not a name"
            bad = _unstorable(item, f"{where}.{key}")
            if bad:
                return bad
        return None
    if isinstance(value, list):
        return next((bad for i, item in enumerate(value) if (bad := _unstorable(item, f"{where}[{i}]"))), None)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value}"
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return f"{where} is a {type(value).__name__} ({str(value)[:40]})"


class UserTask(Task):
    """A user's own child: ``child.task`` names a function ``train(activation, seed, device, options) -> metrics``
    (``evaluator.user``)."""

    reports_accuracy, user = False, True

    def __init__(self, name: str):
        self.name = name

    def problems(self, s) -> Problems:
        out: Problems = []
        if s.model != "auto":
            out.append(("model", f"a user-defined child builds its own model: leave model at auto, got {s.model!r}"))
        if "split" in s.options:
            out.append(("options", "'split' is set by actsearch (val during the search, test for significance); "
                                   "use another name"))
        bad = _unstorable(s.options)
        if bad:
            out.append(("options", f"{bad}: options are stored with the run as JSON: names, strings, finite numbers, "
                                   f"booleans, lists and mappings of them"))
        if str(s.table).strip():
            out.append(("table", f"only task table reads a table; task {self.name} got table {s.table!r}"))
        if s.split == "val" and s.val_size == 0:
            out.append(("val_size", "must be >= 1 when split is val (the accuracy is measured on it)"))
        return out

    def prepare(self, s, search_path=None):
        load_user_function(s.task, search_path)


TASKS: dict[str, Task] = {"mnist1d": Mnist1dTask(), "cifar10": CifarTask("cifar10", 10),
                          "cifar100": CifarTask("cifar100", 100), "synthetic": SyntheticTask(), "table": TableTask()}


def find_task(name: str) -> Task | None:
    """The task ``child.task`` names (a ``UserTask`` for ``module:function``); None when there is none."""
    if is_user_task(name):
        return UserTask(name)
    return TASKS.get(name) if isinstance(name, str) else None


def task_named(name: str) -> Task:
    """The task ``child.task`` names; ``UserError`` listing the valid names when there is none."""
    task = find_task(name)
    if task is None:
        raise UserError(f"child.task: must be one of {', '.join(TASKS)} or MODULE:FUNCTION; got {name!r}")
    return task
