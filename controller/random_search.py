"""Random search: every token string equally likely (each position uniform over its legal tokens), with replacement.

The baseline every learning proposer must beat. Duplicates of already-evaluated functions are expected; the search
loop's ``RewardBook`` gives them their stored reward without training a child.
"""
from __future__ import annotations

import random

from controller.base import Proposal, Proposer
from search.language.space import Space


class RandomProposer(Proposer):
    """Uniform proposals from a ``random.Random`` seeded with ``seed``; never finishes, never updates."""

    kind = "random"

    def __init__(self, space: Space, seed: int):
        super().__init__(space, seed)
        self.rng = random.Random(self.seed)

    def _propose(self, n: int) -> list[Proposal]:
        return [Proposal(self._new_index(), sample_tokens(self.space, self.rng)) for _ in range(n)]

    def _learn(self, proposal: Proposal, reward: float) -> None:
        return None

    def _state(self) -> dict:
        return {"rng": rng_state(self.rng)}

    def _load(self, state: dict) -> None:
        set_rng_state(self.rng, state["rng"])


def sample_tokens(space: Space, rng: random.Random) -> tuple[str, ...]:
    """One uniformly random token string of ``space``."""
    return tuple(c[rng.randrange(len(c))] for c in space.choices)


def rng_state(rng: random.Random) -> list:
    """``rng``'s state as plain lists and ints (safe for ``torch.load(weights_only=True)`` and JSON)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_rng_state(rng: random.Random, state: list) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))
