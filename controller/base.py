"""The contract every proposer keeps: ``ask`` / ``tell`` / ``state_dict`` / ``load_state_dict`` / ``finished``.

The search loop talks to a ``Proposer`` and never needs to know which one runs (see ``controller/__init__.py`` for a
complete example). Bookkeeping shared by all proposers lives here: proposal indices, the record of proposals asked but
not yet told, and checks on what ``tell`` receives.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from search.language.space import Space


@dataclass(frozen=True)
class Proposal:
    """One candidate a proposer asks to be evaluated.

    index: 0, 1, 2, ... in ask order (unique per proposer). tokens: the token string (``space.decode`` gives the
    expression). logp: log-probability of the tokens under the policy that sampled them (None for proposers without a
    policy); the learner needs it when the reward comes back after the policy changed. policy_version: the proposer's
    ``version`` when it was sampled. fingerprint: the function's fingerprint when the proposer knows it already (from
    the space's ``search.language.index.FunctionIndex``), so the search loop need not compute it; None otherwise.
    """

    index: int
    tokens: tuple[str, ...]
    logp: float | None = None
    policy_version: int = 0
    fingerprint: str | None = None

    def to_dict(self) -> dict:
        """JSON-safe form."""
        return {"index": self.index, "tokens": list(self.tokens), "logp": self.logp,
                "policy_version": self.policy_version, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: dict) -> "Proposal":
        """Inverse of ``to_dict`` (a dict without a fingerprint, as runs before it was added hold, gives None)."""
        logp, fingerprint = d.get("logp"), d.get("fingerprint")
        return cls(index=int(d["index"]), tokens=tuple(d["tokens"]), logp=None if logp is None else float(logp),
                   policy_version=int(d.get("policy_version", 0)),
                   fingerprint=None if fingerprint is None else str(fingerprint))


def space_to_dict(space: Space) -> dict:
    return {"core_units": space.core_units, "unary": list(space.unary), "binary": list(space.binary)}


class Proposer(ABC):
    """Proposes candidates (token strings of a ``Space``) and learns from their rewards.

    ask(n) -> up to n new proposals (fewer, possibly none, when the proposer is finished).
    tell(proposal, reward) -> an update record ``{"version", "consumed", "stats"}`` when the learner updated, else None.
      Each asked proposal is told exactly once, in any order, possibly long after later asks (workers finish out of
      order). Telling a proposal that is not outstanding (never asked, already told, or asked after the state the
      proposer was restored from) raises ``ValueError``: it would count twice or come from nowhere.
    state_dict() / load_state_dict(state): everything, random-number states included; plain Python values and tensors
      that survive ``torch.save`` / ``torch.load(weights_only=True)``. A restored proposer continues exactly as the
      original would: the same asks and tells give the same proposals and updates.
    finished: True when ``ask`` will return nothing more. version: number of learner updates so far.

    Determinism: the same space, settings, seed and sequence of ask/tell calls give the same proposals.
    """

    kind: str = ""

    def __init__(self, space: Space, seed: int):
        self.space = space
        self.seed = int(seed)
        self._next_index = 0
        self._outstanding: dict[int, tuple[str, ...]] = {}  # asked, not yet told: index -> tokens

    # -- the contract

    def ask(self, n: int) -> list[Proposal]:
        """Up to ``n`` new proposals, indexed in ask order."""
        if n < 0:
            raise ValueError(f"ask(n) needs n >= 0, got {n}")
        proposals = self._propose(n) if n else []
        for p in proposals:
            self._outstanding[p.index] = p.tokens
        return proposals

    def tell(self, proposal: Proposal, reward: float) -> dict | None:
        """Report the reward of an asked proposal; returns the update record when the learner updated."""
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward of proposal {proposal.index} is {reward}; rewards must be finite")
        tokens = self._outstanding.get(proposal.index)
        if tokens is None:
            raise ValueError(f"proposal {proposal.index} is not outstanding (never asked, or already told)")
        if tuple(proposal.tokens) != tokens:
            raise ValueError(f"proposal {proposal.index} was asked with other tokens than those told")
        del self._outstanding[proposal.index]
        return self._learn(proposal, reward)

    @property
    def finished(self) -> bool:
        return False

    @property
    def version(self) -> int:
        return 0

    @property
    def outstanding(self) -> list[int]:
        """Indices of proposals asked but not yet told."""
        return sorted(self._outstanding)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "space": space_to_dict(self.space), "seed": self.seed,
                "next_index": self._next_index,
                "outstanding": [[i, list(t)] for i, t in sorted(self._outstanding.items())],
                **self._state()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"state is of a {state.get('kind')!r} proposer, this one is {self.kind!r}")
        if state.get("space") != space_to_dict(self.space):
            raise ValueError("state belongs to a different search space")
        self.seed = int(state["seed"])
        self._next_index = int(state["next_index"])
        self._outstanding = {int(i): tuple(t) for i, t in state["outstanding"]}
        self._load(state)

    # -- what each proposer implements

    @abstractmethod
    def _propose(self, n: int) -> list[Proposal]:
        """Up to n proposals; use ``self._new_index()`` for their indices."""

    @abstractmethod
    def _learn(self, proposal: Proposal, reward: float) -> dict | None:
        """Take a (checked) reward into account."""

    @abstractmethod
    def _state(self) -> dict:
        """The proposer's own state (merged into ``state_dict``)."""

    @abstractmethod
    def _load(self, state: dict) -> None:
        """Restore what ``_state`` saved."""

    def _new_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index
