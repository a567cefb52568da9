"""Rewards for candidates that never train a child: screened-out functions and functions already evaluated.

The search loop asks ``RewardBook.judge`` about each proposal before training anything:

- "screened": the function fails the pre-training screen (``Expression.screen``: non-finite values or gradients,
  constant, and linear when ``reject_linear``); its reward is the configured penalty ``screened_reward``. This is what
  stops a controller from farming reward with degenerate functions (``3x``, ``1``, ``-3``): they never reach a child
  and always earn the penalty.
- "duplicate": a function with the same fingerprint already has a recorded reward; the proposal gets that reward
  (training the same function again would only re-draw the noise).
- "pending": a child for this fingerprint is training right now: wait for its reward, then judge again.
- "new": train a child; call ``start(fingerprint)`` when it is submitted and ``record(fingerprint, reward)`` when it
  finishes (``abandon(fingerprint)`` if it is cancelled without a result).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from search.language.expression import Expression

STALL_PROPOSALS = 500  # this many proposals in a row without a new function: the space (or the proposer) is spent


@dataclass(frozen=True)
class Judgement:
    """What to do with a candidate: ``status`` ("new" | "screened" | "duplicate" | "pending"), its ``reward`` when it
    needs no child (None for "new" and "pending"), and the ``reason`` (the screen's verdict, or the status in words)."""

    fingerprint: str
    status: str
    reward: float | None
    reason: str


class RewardBook:
    """Recorded rewards by fingerprint, children in flight, and the screening penalty."""

    def __init__(self, screened_reward: float, reject_linear: bool):
        self.screened_reward = float(screened_reward)
        self.reject_linear = bool(reject_linear)
        self.rewards: dict[str, float] = {}
        self.in_flight: set[str] = set()
        self._screened: dict[str, str] = {}  # fingerprint -> reason (the screen is deterministic: run it once)

    def judge(self, expr: Expression, fingerprint: str | None = None) -> Judgement:
        """The judgement for ``expr``; screened verdicts are remembered, nothing else changes. ``fingerprint``: the
        function's fingerprint when the caller knows it already (``Proposal.fingerprint``, or the store's copy on a
        resume): it is not computed again. The screen runs once per function and process (``identity.screen``
        memoises it, shared with the proposers' ``FunctionIndex``)."""
        fp = expr.fingerprint() if fingerprint is None else fingerprint
        if fp in self._screened:
            return Judgement(fp, "screened", self.screened_reward, self._screened[fp])
        if fp in self.rewards:
            return Judgement(fp, "duplicate", self.rewards[fp], "already evaluated")
        if fp in self.in_flight:
            return Judgement(fp, "pending", None, "a child for this function is training")
        verdict = expr.screen(reject_linear=self.reject_linear)
        if not verdict.ok:
            self._screened[fp] = verdict.reason
            return Judgement(fp, "screened", self.screened_reward, verdict.reason)
        return Judgement(fp, "new", None, "train a child")

    def start(self, fingerprint: str) -> None:
        """A child for ``fingerprint`` was submitted: later judgements of the same function say "pending"."""
        self.in_flight.add(fingerprint)

    def record(self, fingerprint: str, reward: float) -> None:
        """A child for ``fingerprint`` finished with ``reward`` (finite): later judgements say "duplicate"."""
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward for {fingerprint} is {reward}; record a finite reward (the penalty for failures)")
        self.in_flight.discard(fingerprint)
        self.rewards[fingerprint] = reward

    def abandon(self, fingerprint: str) -> None:
        """A child for ``fingerprint`` ended without a reward (cancelled): the function may be proposed anew."""
        self.in_flight.discard(fingerprint)
