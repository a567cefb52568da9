"""Early stopping of hopeless children: asynchronous successive halving (ASHA; Li et al. 2020, as in Ray Tune's
``ASHAScheduler`` and Optuna's ``SuccessiveHalvingPruner``).

A child reports its held-out score at each **rung** (``fidelity.rungs``: steps of its own training). The ``RungBoard``
records the score and answers at once whether the child goes on: it does when its score is at least the
``1 - 1/eta`` quantile of the scores recorded at that rung so far (itself included), so the first child at a rung
always goes on, and later ones must be in the best ``1/eta``. A stopped child is a result (status "stopped") whose
reward is the score it reached; it is never trained again. Scores are rewards (higher is better: a minimised metric
is negated first).

Every decision is kept (``decisions``) so the driver can record it in the run store; a resumed run loads them back
(``load``), and a child that asks again about a rung it already passed (it was running when the driver died, and
trains again from its seed) gets the same answer.

``ordered`` (deterministic scheduling, ``search.loop.schedule``): decisions are taken in the children's order, not in
the order their reports arrive: a child's report waits (``decide`` answers None, the reporter asks again) while a
child before it is still training (``launched``, not ``ended``) and has not reported at that rung.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Hashable

from search.language.errors import UserError


@dataclass
class FidelitySettings:
    """Early stopping (asynchronous successive halving, as ASHA): a child reports its held-out score at each rung (a
    step of its own training); it goes on only while its score is in the best ``1 / eta`` of the scores recorded at
    that rung so far, else it stops there and its reward is the score it reached (docs/fidelity.md)."""

    rungs: tuple[int, ...] = ()  # steps of a child's training at which it reports and may be stopped, increasing and below child.steps (e.g. [55, 166] for 500 steps: 1/9 and 1/3); empty = off: every child trains all its steps
    eta: float = 3.0  # a child goes on from a rung when its score is in the best 1/eta of the scores recorded there (3: the best third)
    stop: bool = True  # false: children report at the rungs and never stop (a table build records their learning curves)

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if any(r < 1 for r in self.rungs):
            out.append(("rungs", f"must be steps >= 1, got {list(self.rungs)}"))
        elif any(b <= a for a, b in zip(self.rungs, self.rungs[1:])):
            out.append(("rungs", f"must be increasing, got {list(self.rungs)}"))
        if len(self.rungs) > 16:
            out.append(("rungs", f"at most 16 rungs, got {len(self.rungs)}"))
        if not (math.isfinite(self.eta) and 1 < self.eta <= 1000):
            out.append(("eta", f"must be above 1 (a child goes on when in the best 1/eta) and at most 1000, "
                               f"got {self.eta}"))
        return out


WAIT_S = 0.02  # how often a waiting report asks again


@dataclass(frozen=True)
class RungDecision:
    key: Hashable  # the child (a candidate index)
    rung: int  # 0, 1, ... in ``fidelity.rungs`` order
    step: int  # the step the child reported at
    score: float  # its reward-oriented score there
    go_on: bool


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation between order statistics, as numpy's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class RungBoard:
    """The scores recorded at each rung and the decisions taken. ``rungs``: steps, increasing; ``eta`` > 1;
    ``metric``: what the children report (``rewards.metric``); ``minimize``: it is to be minimised (the reported
    values are negated into scores); ``stop`` False: record the scores (learning curves), stop no child."""

    def __init__(self, rungs: tuple[int, ...] | list[int], eta: float, metric: str = "accuracy",
                 minimize: bool = False, stop: bool = True, ordered: bool = False):
        self.rungs, self.eta = tuple(int(r) for r in rungs), float(eta)
        self.metric, self.minimize, self.stop, self.ordered = metric, bool(minimize), bool(stop), bool(ordered)
        self.live: set = set()  # children training now (ordered decisions wait for the ones before them)
        self.scores: list[list[float]] = [[] for _ in self.rungs]
        self.known: dict[tuple[Hashable, int], RungDecision] = {}
        self.decisions: list[RungDecision] = []  # in the order they were taken; ``drain`` hands them on once
        self._drained = 0

    def load(self, decisions: list[RungDecision]) -> None:
        """Take back the decisions a run recorded (a resume), in their order."""
        for d in decisions:
            if (d.key, d.rung) not in self.known and 0 <= d.rung < len(self.rungs):
                self.known[d.key, d.rung] = d
                self.scores[d.rung].append(d.score)
        self._drained = len(self.decisions)

    def launched(self, key: Hashable) -> None:
        self.live.add(key)

    def ended(self, key: Hashable) -> None:
        self.live.discard(key)

    def decide(self, key: Hashable, rung: int, step: int, value: float) -> bool | None:
        """Record child ``key``'s ``value`` (the metric) at ``rung``; whether it goes on (None: ask again, a child
        before it has yet to report there)."""
        if (key, rung) in self.known:
            return self.known[key, rung].go_on
        if self.ordered and any(k < key and (k, rung) not in self.known for k in self.live):
            return None
        score = -value if self.minimize else value
        recorded = self.scores[rung]
        recorded.append(score)
        go_on = not self.stop or score >= quantile(recorded, 1.0 - 1.0 / self.eta)
        decision = RungDecision(key, rung, int(step), float(score), go_on)
        self.known[key, rung] = decision
        self.decisions.append(decision)
        return go_on

    def drain(self) -> list[RungDecision]:
        """The decisions taken since the last ``drain`` (or ``load``)."""
        new, self._drained = self.decisions[self._drained:], len(self.decisions)
        return new

    def reporter(self, key: Hashable) -> "Reporter":
        """The callable child ``key`` reports through, in this process."""
        return Reporter(self.rungs, self.metric, lambda rung, step, value: self.decide(key, rung, step, value))


class Reporter:
    """What a child calls as it trains: ``report(step, value) -> bool`` (go on?). ``rungs``: the steps at which the
    built-in training loop reports. A report at a step short of the next rung is recorded nowhere and answers True; the
    first report at or past a rung decides that rung. A value that is not a finite number, or a step below one already
    reported, is the child's error (``UserError``: a user's child that reports wrongly fails, and a broken setup is
    stopped by probation)."""

    def __init__(self, rungs: tuple[int, ...], metric: str, decide: Callable[[int, int, float], bool]):
        self.rungs, self.metric, self._decide = tuple(rungs), metric, decide
        self._next = 0  # the next rung to decide
        self._last_step = -1
        self.stopped_at: tuple[int, int, float] | None = None  # (rung, step, value) where it said stop

    def __call__(self, step: int, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"report({step!r}, {value!r}): the value must be a finite number")
        if isinstance(step, bool) or not isinstance(step, int) or step < self._last_step:
            raise UserError(f"report({step!r}, {value!r}): steps must be whole numbers that do not decrease "
                            f"(the last was {self._last_step})")
        self._last_step = step
        if self.stopped_at is not None:
            return False
        go_on = True
        while self._next < len(self.rungs) and step >= self.rungs[self._next]:
            go_on = self._decide(self._next, step, float(value))
            while go_on is None:  # ordered decisions: a child before this one has yet to report at this rung
                time.sleep(WAIT_S)
                go_on = self._decide(self._next, step, float(value))
            self._next += 1
            if not go_on:
                self.stopped_at = (self._next - 1, step, float(value))
                break
        return go_on

    def due(self, step: int) -> bool:
        """Whether the training loop should evaluate and report after ``step`` steps."""
        return self._next < len(self.rungs) and step >= self.rungs[self._next]


def count_child(steps: dict, status: str, metrics: dict | None) -> None:
    """Add one recorded child (its status and result record) to ``steps``, a ``Store.child_steps()`` dict, as the
    store counts it: the driver keeps its tally this way instead of asking the store after every child."""
    metrics = metrics or {}
    steps["children"] += 1
    steps["steps"] += int(metrics.get("steps") or 0)
    if status == "stopped" and metrics.get("rung") is not None:
        rung = int(metrics["rung"])
        steps["stopped"][rung] = steps["stopped"].get(rung, 0) + 1


def early_stopping_text(steps: dict, config) -> str:
    """``stopped 12 at rung 1 (55 steps), 4 at rung 2 (166); 38% of child steps saved``: what early stopping did in a
    run so far (``steps``: ``Store.child_steps()``; empty before any child trained). Saved: the steps the stopped
    children did not train, as a share of the steps all children would train in full (``child.steps`` each). Steps
    that children which ended on their own did not train (a diverging loss, a crash, a time limit) are said apart,
    so a run that stops no child does not read as if early stopping had saved compute."""
    if not steps["children"]:
        return ""
    rungs, full_steps = config.fidelity.rungs, config.child.steps
    parts = [f"{n} at rung {r + 1}" + (f" ({rungs[r]} steps)" if r < len(rungs) else "")
             for r, n in sorted(steps["stopped"].items())]
    text, full = f"stopped {', '.join(parts) if parts else 'none'}", steps["children"] * full_steps
    if not full:
        return text
    by_stopping = sum(n * max(full_steps - rungs[r], 0) for r, n in steps["stopped"].items() if r < len(rungs))
    untrained = max(full - steps["steps"] - by_stopping, 0)
    if parts:
        text += f"; {by_stopping / full:.0%} of child steps saved"
    if untrained / full >= 0.005:
        text += f"; {untrained / full:.0%} not trained by children that ended early on their own"
    return text
