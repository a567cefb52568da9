"""A child's result: one typed record, built by one constructor per outcome, serialised in one place, and one reward.

Every way a child can end is a ``ChildResult``: ``ok`` (with its score), ``diverged`` (a non-finite loss or output:
the candidate's doing), ``failed`` (an exception, a missing metric, a lost worker), ``timeout``, or ``stopped`` (early
stopping ended it at a rung, ``search.loop.fidelity``: its score there is its metric); ``fault`` says whose
failure a non-ok result is, "candidate" or "system" (the worker, the data, the clock: such a failure is queued again
and never becomes the function's reward). The training loop, the synthetic task, the table replay, user-defined
children and the child pool all build results through the constructors below; ``to_dict`` is the record the run
store keeps and Ray carries, ``from_dict`` reads it back (and turns anything malformed into a system failure).

What a record may hold is bounded (``MAX_METRICS`` user metrics, ``MAX_TEXT`` characters of error text): a child
returning 200,000 metrics keeps the first ``MAX_METRICS`` and the record says how many were cut.
"""
from __future__ import annotations

import math
import traceback as tb
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from search.language.errors import UserError

NON_FINITE_TEXTS = ("nan", "inf", "-inf")  # str(v) of a non-finite float, as JSON-safe records keep one
STATUSES = ("ok", "diverged", "failed", "timeout", "stopped")
FAULTS = ("candidate", "system")
MAX_METRICS = 64  # user metrics kept per child (a child's record is stored with every candidate; reports read them all)
MAX_TEXT = 2_000  # characters of an error message kept in the store (the whole traceback goes to run.log)


def one_line(exc: BaseException, where: bool = False) -> str:
    """An exception in one line: its type and its message's last line; ``where`` adds the file and line it was raised
    at. A ``UserError`` without ``where`` is its message alone (it already names what is wrong). The one way any layer
    turns an exception into a result's error."""
    if isinstance(exc, UserError) and not where:
        return str(exc)
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[-1].strip() if lines else ''}".rstrip(": ")
    frames = tb.extract_tb(exc.__traceback__) if where else []
    if frames:
        text += f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})"
    return text


@dataclass
class ChildResult:
    """One child's outcome. ``accuracy`` is the built-in tasks' score (None unless ok); ``metrics`` what a user-defined
    child returned; ``extra`` what a task or the pool adds (``node``, ``host``, ``table_seed``, ...); ``traceback``
    goes to run.log, never to the store."""

    status: str
    activation: str
    seed: int
    split: str | None = "val"
    fault: str | None = None
    error: str | None = None
    accuracy: float | None = None
    train_loss: float | None = None
    steps: int = 0
    wall_s: float | None = None
    images_per_s: float | None = None
    device: str | None = None
    metrics: dict | None = None
    traceback: str | None = None
    extra: dict = field(default_factory=dict)

    # -- one constructor per outcome

    @classmethod
    def ok(cls, activation: str, seed: int, accuracy: float | None, **kw) -> "ChildResult":
        return cls("ok", activation, seed, accuracy=accuracy, **kw)

    @classmethod
    def diverged(cls, activation: str, seed: int, error: str, **kw) -> "ChildResult":
        return cls("diverged", activation, seed, fault="candidate", error=error, **kw)

    @classmethod
    def failed(cls, activation: str, seed: int, error: str, fault: str, **kw) -> "ChildResult":
        return cls("failed", activation, seed, fault=fault, error=error, **kw)

    @classmethod
    def stopped(cls, activation: str, seed: int, value: float, rung: int, step: int, metric: str = "accuracy",
                **kw) -> "ChildResult":
        """Stopped by early stopping at ``rung`` (after ``step`` steps) with ``value`` of its ``metric`` there."""
        extra = {**kw.pop("extra", {}), "rung": rung, "rung_step": step}
        if metric == "accuracy":
            return cls("stopped", activation, seed, accuracy=value, steps=step, extra=extra, **kw)
        metrics = {**(kw.pop("metrics", None) or {}), metric: value}
        return cls("stopped", activation, seed, metrics=metrics, steps=step, extra=extra, **kw)

    @classmethod
    def timeout(cls, activation: str, seed: int, error: str, fault: str = "system", **kw) -> "ChildResult":
        return cls("timeout", activation, seed, fault=fault, error=error, **kw)

    # -- what it means

    @property
    def system_failure(self) -> bool:
        """Failed for reasons outside the candidate: queued again, never the function's reward."""
        return self.status != "ok" and self.fault == "system"

    def metric(self, name: str = "accuracy"):
        """Metric ``name``: from ``metrics`` (a user-defined child) when there are any, else the record's own."""
        if isinstance(self.metrics, dict):
            return self.metrics.get(name)
        return getattr(self, name, None) if name in _FIELDS else self.extra.get(name)

    # -- serialised in one place

    def to_dict(self) -> dict:
        """The record the store keeps and Ray carries (JSON-safe; no traceback; bounded)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("extra", "traceback")}
        if out["metrics"] is None:
            del out["metrics"]
        if isinstance(out["error"], str) and len(out["error"]) > MAX_TEXT:
            out["error"] = out["error"][:MAX_TEXT] + " [cut]"
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, record: Any) -> "ChildResult":
        """A record back as a result; anything malformed is a failed result, the system's fault."""
        if not isinstance(record, dict) or record.get("status") not in STATUSES:
            return cls.failed(str(record.get("activation", "?")) if isinstance(record, dict) else "?",
                              int(record.get("seed", 0) or 0) if isinstance(record, dict) else 0,
                              f"malformed result record: {str(record)[:200]}", "system")
        known = {k: record[k] for k in _FIELDS if k in record and k not in ("extra",)}
        known.setdefault("activation", "?")
        known.setdefault("seed", 0)
        return cls(**known, extra={k: v for k, v in record.items() if k not in _FIELDS})

    def bounded(self) -> "ChildResult":
        """This result with at most ``MAX_METRICS`` metrics (the rest cut, and the record says so)."""
        if isinstance(self.metrics, dict) and len(self.metrics) > MAX_METRICS:
            kept = dict(list(self.metrics.items())[:MAX_METRICS])
            self.extra["metrics_cut"] = len(self.metrics) - MAX_METRICS
            self.metrics = kept
        return self


_FIELDS = {f.name for f in fields(ChildResult)}


def reward(result: ChildResult, rewards) -> tuple[str, float, ChildResult]:
    """A child's ``(status, reward, result)``: for "ok", the reward of its ``rewards.metric`` (the metric, or minus it
    when ``rewards.minimize``), else ``rewards.failed``. An "ok" result with a non-finite metric becomes "diverged",
    one without a number for it "failed", the candidate's fault either way (the returned result says why).
    ``rewards``: the run's ``rewards:`` settings (``metric``, ``minimize``, ``failed``). A child stopped early earns
    the score it reached (lower fidelity, usually lower than where it would have ended). The one place a reward is
    computed."""
    value = result.metric(rewards.metric)
    if value in NON_FINITE_TEXTS:  # how a user child's record keeps a non-finite value (evaluator.user)
        value = float(value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if result.status in ("ok", "stopped") and not (number and math.isfinite(value)):
        # a non-finite metric is a divergence, as a built-in child's non-finite loss is; no number is a failure
        why = (f"the child returned no metric {rewards.metric!r}" if value is None
               else f"the child's {rewards.metric} is {value}, not a finite number")
        result = ChildResult(**{**{f: getattr(result, f) for f in _FIELDS}, "status": "diverged" if number else
                                "failed", "error": why, "fault": "candidate"})
    if result.status not in ("ok", "stopped"):
        return result.status, float(rewards.failed), result
    return result.status, (-float(value) if rewards.minimize else float(value)), result
