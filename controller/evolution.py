"""Regularized (aging) evolution, Real et al. 2019: tournament selection, one-token mutation, removal of the oldest.

The population is the ``population_size`` most recently rewarded candidates, in the order their rewards arrived; when
a reward arrives its candidate joins and, if the population is over size, the oldest member leaves (however good: age,
not fitness, decides, which keeps the search from resting on one lucky evaluation).

Asynchronous: ``ask`` never waits for rewards. The first ``population_size`` proposals are uniformly random (as is any
proposal while no reward has arrived yet); after that each proposal is a child of the current population: a parent
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
from search.space import Space


class EvolutionProposer(Proposer):
    """Regularized evolution over the token strings of ``space``; never finishes, never updates a policy."""

    kind = "evolution"

    def __init__(self, space: Space, seed: int, population_size: int = 32, tournament_size: int = 8,
                 crossover_prob: float = 0.0):
        super().__init__(space, seed)
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.crossover_prob = crossover_prob
        self.rng = random.Random(self.seed)
        self.population: deque[tuple[int, tuple[str, ...], float]] = deque()  # (index, tokens, reward), oldest first
        self.random_asked = 0
        self._mutable = [p for p, c in enumerate(space.choices) if len(c) > 1]

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
        if not self._mutable:  # a space with one token string: nothing to mutate
            return tuple(tokens)
        position = self.rng.choice(self._mutable)
        alternatives = [t for t in self.space.choices[position] if t != tokens[position]]
        tokens[position] = self.rng.choice(alternatives)
        return tuple(tokens)

    def _learn(self, proposal: Proposal, reward: float) -> None:
        self.population.append((proposal.index, tuple(proposal.tokens), reward))
        if len(self.population) > self.population_size:
            self.population.popleft()  # the oldest leaves, whatever its reward
        return None

    def _state(self) -> dict:
        return {"rng": rng_state(self.rng), "random_asked": self.random_asked,
                "population": [[i, list(t), r] for i, t, r in self.population]}

    def _load(self, state: dict) -> None:
        set_rng_state(self.rng, state["rng"])
        self.random_asked = int(state["random_asked"])
        self.population = deque((int(i), tuple(t), float(r)) for i, t, r in state["population"])
