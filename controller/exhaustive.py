"""Exhaustive search: every distinct function of the space exactly once, in a fixed order, resumable mid-way.

Token strings are walked in ``space.enumerate()`` order (lexicographic by position); a token string is proposed when
its function (its fingerprint, from the space's ``FunctionIndex``) has not been proposed before, so each distinct
function is proposed once, by its first token string. Fingerprints are computed lazily, only as far as ``ask`` needs,
so creating the proposer costs nothing however large the space (the walk has no size limit); one ``ask(n)``
fingerprints the next token strings until it has n new functions. Proposals carry their fingerprint.
The state is the position in the walk and the fingerprints proposed so far: a restored proposer continues the walk.
Every function is proposed, degenerate ones included; the search loop's ``RewardBook`` screens those.
"""
from __future__ import annotations

from controller.base import Proposal, Proposer
from search.language.index import FunctionIndex
from search.language.space import Space


class ExhaustiveProposer(Proposer):
    """Each distinct function of ``space`` once; ``finished`` after the last token string was examined."""

    kind = "exhaustive"

    def __init__(self, space: Space, seed: int):
        super().__init__(space, seed)
        self.index = FunctionIndex.of(space)
        self.cursor = 0  # enumeration position of the next token string to examine
        self.seen: set[str] = set()  # fingerprints already proposed

    @property
    def finished(self) -> bool:
        return self.cursor >= self.space.size

    def _propose(self, n: int) -> list[Proposal]:
        out: list[Proposal] = []
        while len(out) < n and not self.finished:
            tokens = self.space.tokens_at(self.cursor)
            self.cursor += 1
            fp = self.index.fingerprint(tokens)
            if fp not in self.seen:
                self.seen.add(fp)
                out.append(Proposal(self._new_index(), tokens, fingerprint=fp))
        return out

    def _learn(self, proposal: Proposal, reward: float) -> None:
        return None

    def _state(self) -> dict:
        return {"cursor": self.cursor, "seen": sorted(self.seen)}

    def _load(self, state: dict) -> None:
        self.cursor = int(state["cursor"])
        self.seen = set(state["seen"])
