"""Regularized (aging) evolution, Real et al. 2019: tournament selection, one-token mutation, removal of the oldest.

Time is counted in tells (one per proposal rewarded). The population is the candidates whose function was rewarded
for the first time within the last ``population_size`` tells, in the order their rewards arrived: when a reward
arrives the clock advances, its candidate joins if its function is new to the proposer, and every member that joined
``population_size`` tells ago leaves (however good: age, not fitness, decides, which keeps the search from resting on
one lucky evaluation).

Duplicates. A function already rewarded (same ``Expression.fingerprint``, whatever its token string) is not trained
again in a search: the ``RewardBook`` tells it its twin's stored reward at once. Such a reward is no new evidence,
only the old evaluation repeated, and in Real et al. every member of the population stands for one evaluation that
ages. Letting the duplicate join would hand one lucky evaluation a fresh life with every re-proposal (its children are
one token from it and often compute the same function), so it would never age out. So a duplicate advances the clock
but does not join: an evaluation stays in the population ``population_size`` tells at most, re-proposed or not. With
no duplicates the population is exactly the ``population_size`` latest candidates, as in Real et al.; while a search
keeps re-proposing known functions the population thins (fewer recent evaluations to select from), and if it empties,
proposals are random again until new rewards arrive.

The proposer recognises duplicates itself, so no caller has to say which tells are duplicates: a duplicate is a tell
of a function (fingerprint) already rewarded, with that same reward. A duplicate always brings its twin's stored
reward, and a new evaluation almost never an earlier reward exactly, so fingerprints (~0.5 ms each) are computed only
for tells whose reward value came before (``rewarded``: reward -> fingerprints, ``unfingerprinted``: reward -> token
strings not fingerprinted yet). A function evaluated again with a different reward (retrained, say) is fresh evidence
and joins like a new one.

Asynchronous: ``ask`` never waits for rewards. The first ``population_size`` proposals are uniformly random (as is any
proposal while the population is empty); after that each proposal is a child of the current population: a parent
wins a tournament (``tournament_size`` members drawn without replacement, the best reward wins, ties to the first
drawn), and with probability ``crossover_prob`` a second tournament winner contributes core units (each unit of the
child from either parent, equally likely: a unit's inputs name earlier units by position, so any mix is legal). Then
exactly one token changes: a position with more than one legal token, uniformly, gets a different legal token.
"""
from __future__ import annotations

import random
from collections import deque

from controller.base import Proposal, Proposer
from controller.random_search import rng_state, sample_tokens, set_rng_state
from search.language.space import Space


class EvolutionProposer(Proposer):
    """Regularized evolution over the token strings of ``space``; never finishes, never updates a policy.

    population: ``(index, tokens, reward, joined)`` per member, oldest first (``joined``: the tell count when it
    joined). tells: rewards received so far. rewarded / unfingerprinted: the first rewards of functions by reward value
    (see the module docstring).
    """

    kind = "evolution"

    def __init__(self, space: Space, seed: int, population_size: int = 32, tournament_size: int = 8,
                 crossover_prob: float = 0.0):
        super().__init__(space, seed)
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.crossover_prob = crossover_prob
        self.rng = random.Random(self.seed)
        self.population: deque[tuple[int, tuple[str, ...], float, int]] = deque()
        self.tells = 0
        self.rewarded: dict[float, set[str]] = {}
        self.unfingerprinted: dict[float, list[tuple[str, ...]]] = {}
        self.random_asked = 0

    def _propose(self, n: int) -> list[Proposal]:
        out = []
        for _ in range(n):
            if self.random_asked < self.population_size or not self.population:
                self.random_asked += 1
                tokens = sample_tokens(self.space, self.rng)
            else:
                tokens = self._child()
            out.append(Proposal(self._new_index(), tokens))
        return out

    def _tournament(self) -> tuple[str, ...]:
        drawn = self.rng.sample(range(len(self.population)), min(self.tournament_size, len(self.population)))
        best = max(drawn, key=lambda i: self.population[i][2])  # max keeps the first of equals
        return self.population[best][1]

    def _child(self) -> tuple[str, ...]:
        tokens = list(self._tournament())
        if self.space.core_units > 1 and self.crossover_prob > 0 and self.rng.random() < self.crossover_prob:
            other = self._tournament()
            for unit in range(self.space.core_units):
                if self.rng.random() < 0.5:
                    tokens[5 * unit: 5 * unit + 5] = other[5 * unit: 5 * unit + 5]
        return mutate(self.space, tokens, self.rng)

    def _learn(self, proposal: Proposal, reward: float) -> None:
        self.tells += 1
        if self._first_reward(tuple(proposal.tokens), reward):  # a duplicate repeats an old evaluation (docstring)
            self.population.append((proposal.index, tuple(proposal.tokens), reward, self.tells))
        while self.population and self.population[0][3] <= self.tells - self.population_size:
            self.population.popleft()  # the oldest leaves, whatever its reward
        return None

    def _first_reward(self, tokens: tuple[str, ...], reward: float) -> bool:
        """Whether this is its function's first reward (else a duplicate: same function, same reward); records it."""
        if reward not in self.rewarded:  # no function earned this reward yet: new; fingerprinted when the value recurs
            self.rewarded[reward] = set()
            self.unfingerprinted[reward] = [tokens]
            return True
        known = self.rewarded[reward]
        for earlier in self.unfingerprinted.pop(reward, []):
            known.add(self.space.decode(earlier).fingerprint())
        fingerprint = self.space.decode(tokens).fingerprint()
        if fingerprint in known:
            return False
        known.add(fingerprint)
        return True

    def _state(self) -> dict:
        return {"rng": rng_state(self.rng), "random_asked": self.random_asked, "tells": self.tells,
                "rewarded": [[r, sorted(self.rewarded[r]), [list(t) for t in self.unfingerprinted.get(r, [])]]
                             for r in sorted(self.rewarded)],
                "population": [[i, list(t), r, j] for i, t, r, j in self.population]}

    def _load(self, state: dict) -> None:
        set_rng_state(self.rng, state["rng"])
        self.random_asked = int(state["random_asked"])
        members = state["population"]
        # States saved before duplicates were recognised: members without a join time joined one tell apart, and
        # only the members' rewards are known.
        self.tells = int(state.get("tells", len(members)))
        self.population = deque((int(m[0]), tuple(m[1]), float(m[2]),
                                 int(m[3]) if len(m) > 3 else self.tells - len(members) + 1 + k)
                                for k, m in enumerate(members))
        rewarded = state.get("rewarded", [[r, [], [t]] for _, t, r, _ in self.population])
        self.rewarded, self.unfingerprinted = {}, {}
        for reward, fingerprints, pending in rewarded:
            self.rewarded.setdefault(float(reward), set()).update(fingerprints)
            if pending:
                self.unfingerprinted.setdefault(float(reward), []).extend(tuple(t) for t in pending)


def mutate(space: Space, tokens, rng: random.Random) -> tuple[str, ...]:
    """``tokens`` with exactly one token changed: a position with more than one legal token, uniformly, gets another
    legal token, uniformly (unchanged in a space with one token string)."""
    mutable = [p for p, c in enumerate(space.choices) if len(c) > 1]
    tokens = list(tokens)
    if not mutable:
        return tuple(tokens)
    position = rng.choice(mutable)
    tokens[position] = rng.choice([t for t in space.choices[position] if t != tokens[position]])
    return tuple(tokens)
