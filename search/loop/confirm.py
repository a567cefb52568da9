"""The ``confirm:`` section: what a run does once its search's budget is spent (``search.analysis.confirm`` does it)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from evaluator.settings import ChildSettings
from evaluator.tasks import find_task
from search.language.errors import UserError
from search.loop.config_yaml import describe
from search.loop.fields import build_settings


@dataclass
class ConfirmSettings:
    """What a run does once its search's budget is spent: re-train its best functions against baselines over paired
    seeds on held-out data, as ``actsearch significance`` does and stored the same way, so the run ends with verdicts
    (``search.analysis.confirm``). It acts only after the search, so a resumed run may change it."""

    enabled: bool = False  # confirm when the search ends; off unless a config turns it on (the shipped configs that train a real child do), so a config without this section, a resumed older run and the synthetic task run the search alone as before
    top: int = 3  # functions confirmed: the search's best by its best estimate (the mean over a function's evaluations where it has several, else its reward)
    baselines: tuple[str, ...] = ("relu", "swish", "gelu")  # what each is compared with, in this order: baseline names (relu, swish, gelu, silu, elu, ...) or expressions
    seeds: int = 10  # paired seeds per function; a verdict needs seeds_needed(top x baselines) seeds all on one side (9 for 3 x 3), more when seeds disagree or tie
    split: str = "test"  # held-out set the scores come from: test (data the search never scored) or val (the set it selected on: verdicts favour the candidates)
    children: dict = field(default_factory=dict)  # other children to confirm on, by name, each a separate study: child settings that differ from the run's, e.g. {longer: {steps: 1500}} or {resnet: {task: cifar10, model: resnet20}}; a user child's options merge key by key

    def problems(self) -> list[tuple[str, str]]:
        from evaluator.activations import activation_label

        out: list[tuple[str, str]] = []
        for name, low, high in (("top", 1, 1000), ("seeds", 1, 1000)):
            if not low <= getattr(self, name) <= high:
                out.append((name, f"must be from {low} to {high}, got {getattr(self, name)}"))
        if not self.baselines:
            out.append(("baselines", "must name at least one baseline, e.g. [relu, swish, gelu]"))
        for name in self.baselines:
            try:
                activation_label(name)
            except UserError as exc:
                out.append(("baselines", str(exc)))
                break
        else:
            from evaluator.activations import repeated_baseline

            repeat = repeated_baseline(self.baselines)
            if repeat:
                out.append(("baselines", repeat))
        if self.split not in ("val", "test"):
            out.append(("split", f"must be val or test, got {self.split!r}"))
        for name, entry in self.children.items():
            if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
                out.append((f"children.{name}", "name a child with letters, digits, '.', '_' and '-'"))
            elif not isinstance(entry, dict) or not entry:
                out.append((f"children.{name}", f"must be a mapping of the child settings that differ from the "
                                                f"run's, e.g. {{steps: 1500}}; got {describe(entry)}"))
            elif "split" in entry:
                out.append((f"children.{name}.split", "the split of every confirmation is confirm.split"))
        return out

    def child_problems(self, child: ChildSettings) -> list[tuple[str, str]]:
        """Problems of this section that involve the run's ``child`` section: a named baseline the synthetic task
        cannot score, and each of ``children`` as whole child settings (``UserError`` naming its bad field)."""
        from evaluator.activations import BASELINES

        out: list[tuple[str, str]] = []
        task = find_task(child.task)
        named = [b for b in self.baselines if b.lower() in BASELINES]
        if self.enabled and task is not None and not task.held_out and named:
            out.append(("confirm.baselines", "the synthetic task scores expressions only; write each baseline as one, "
                                             "e.g. [relu(x), x * sigmoid(beta * x)]"))
        for name, entry in self.children.items():
            merged = dataclasses.asdict(child)
            for key, value in entry.items():
                merged[key] = {**merged[key], **value} if key == "options" and isinstance(value, dict) and value \
                    else value  # options: {} clears them
            if build_settings(ChildSettings, merged, f"confirm.children.{name}") == child:
                out.append((f"confirm.children.{name}", "is the run's own child; name a setting that differs"))
        return out
