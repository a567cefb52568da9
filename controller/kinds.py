"""The proposer kinds, one class each, found by name in ``KINDS`` (``controller.kind``). A kind owns the checks of the
``controller:`` knobs it reads and builds its proposer; the section stays flat (every knob is a field of
``ControllerSettings``, documented there), and every knob is checked whichever kind runs.
"""
from __future__ import annotations

from controller.base import Proposer
from controller.evolution import EvolutionProposer
from controller.exhaustive import ExhaustiveProposer
from controller.policy import PolicyProposer
from controller.random_search import RandomProposer
from controller.surrogate import SurrogateProposer
from search.language.checks import Problems
from search.language.space import Space


class Kind:
    """A proposer kind: the knobs it reads, their checks, and its proposer. ``s`` is the ``ControllerSettings``
    (not imported here: it imports this registry)."""

    knobs: tuple[str, ...] = ()  # the controller: fields it reads besides kind

    def problems(self, s) -> Problems:
        """``(field, what is wrong)`` for the knobs this kind reads."""
        return Problems()

    def build(self, s, space: Space, seed: int) -> Proposer:
        raise NotImplementedError


class PolicyKind(Kind):
    """An LSTM policy trained by PPO, or by REINFORCE (one epoch, no clipping)."""

    knobs = ("hidden_size", "embedding_size", "num_layers", "temperature", "tanh_cap", "batch_size", "lr", "epochs",
             "clip", "target_kl", "entropy_weight", "rank_window", "baseline_decay", "normalize_advantages",
             "grad_clip")

    def __init__(self, reinforce: bool = False):
        self.reinforce = reinforce

    def problems(self, s):
        out = Problems()
        out.within("hidden_size", s.hidden_size, 1, 4096)
        out.within("embedding_size", s.embedding_size, 1, 4096)
        out.within("num_layers", s.num_layers, 1, 16)
        out.need("temperature", s.temperature, s.temperature > 0, "> 0")
        out.need("tanh_cap", s.tanh_cap, s.tanh_cap >= 0, ">= 0 (0 = no cap)")
        out.within("batch_size", s.batch_size, 1, 100_000)
        out.need("lr", s.lr, s.lr > 0, "> 0")
        out.within("epochs", s.epochs, 1, 1000)
        out.need("clip", s.clip, 0 < s.clip < 1,
                 "from 0 to 1, exclusive (the ratio is clipped to [1 - clip, 1 + clip])")
        out.need("target_kl", s.target_kl, s.target_kl >= 0, ">= 0 (0 = no early stop)")
        out.need("rank_window", s.rank_window, 0 <= s.rank_window <= 100_000,
                 "from 0 (= moving-average baseline) to 100,000")
        out.need("entropy_weight", s.entropy_weight, s.entropy_weight >= 0, ">= 0")
        out.need("baseline_decay", s.baseline_decay, 0 <= s.baseline_decay < 1, "in [0, 1)")
        out.need("grad_clip", s.grad_clip, s.grad_clip >= 0, ">= 0 (0 = no clipping)")
        return out

    def build(self, s, space, seed):
        return PolicyProposer(space, seed, s, reinforce=self.reinforce)


class RandomKind(Kind):
    """Uniform token strings."""

    def build(self, s, space, seed):
        return RandomProposer(space, seed)


class ExhaustiveKind(Kind):
    """Every distinct function of the space once."""

    def build(self, s, space, seed):
        return ExhaustiveProposer(space, seed)


class EvolutionKind(Kind):
    """Regularized (ageing) evolution."""

    knobs = ("population_size", "tournament_size", "crossover_prob")

    def problems(self, s):
        out = Problems()
        out.within("population_size", s.population_size, 2, 1_000_000)
        out.need("tournament_size", s.tournament_size, 1 <= s.tournament_size <= s.population_size,
                 f">= 1 and <= population_size ({s.population_size})")
        out.need("crossover_prob", s.crossover_prob, 0 <= s.crossover_prob <= 1, "in [0, 1]")
        return out

    def build(self, s, space, seed):
        return EvolutionProposer(space, seed, s.population_size, s.tournament_size, s.crossover_prob)


class SurrogateKind(Kind):
    """A Gaussian process on the functions' shapes picks the next batch (upper confidence bound)."""

    knobs = ("surrogate_initial", "surrogate_kappa", "surrogate_pool")

    def problems(self, s):
        out = Problems()
        out.within("surrogate_initial", s.surrogate_initial, 1, 1_000_000)
        out.within("surrogate_kappa", s.surrogate_kappa, 0, 100)
        out.within("surrogate_pool", s.surrogate_pool, 16, 100_000)
        return out

    def build(self, s, space, seed):
        return SurrogateProposer(space, seed, s.surrogate_initial, s.surrogate_kappa, s.surrogate_pool)


KINDS: dict[str, Kind] = {"ppo": PolicyKind(), "reinforce": PolicyKind(reinforce=True), "random": RandomKind(),
                          "exhaustive": ExhaustiveKind(), "evolution": EvolutionKind(), "surrogate": SurrogateKind()}
