"""``ControllerSettings``: the ``controller:`` section of a search config (which proposer, and every knob it has)."""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("ppo", "reinforce", "random", "exhaustive", "evolution")


@dataclass
class ControllerSettings:
    """Which proposer proposes candidates, and its settings. Knobs a proposer does not use are ignored by it."""

    # Proposer: "ppo" (RNN policy, PPO), "reinforce" (same policy and learner: one epoch, no clipping), "random"
    # (uniform over token strings), "exhaustive" (every distinct function once), "evolution" (regularized evolution).
    kind: str = "ppo"

    # -- RNN policy (ppo, reinforce)
    # LSTM hidden units: small because the sequence is short (5 tokens per core unit) and sampling must stay cheap
    # (128 learned no better on the synthetic task).
    hidden_size: int = 64
    # Size of the learned embedding of each sampled token, fed back as the next step's input (half the hidden size).
    embedding_size: int = 32
    # Stacked LSTM layers (one suffices for 5-10 tokens).
    num_layers: int = 1
    # Sampling temperature: logits are divided by it (> 1 explores more). The learner trains this same distribution,
    # so the temperature scales how far each update moves the probabilities; 1 = plain softmax.
    temperature: float = 1.0
    # Logits are squashed to cap * tanh(logits / cap): no token's probability can fall below ~e^(-2 cap) of the most
    # likely one's, so the policy keeps exploring (1.5 found the synthetic target most often; Zoph & Le use 2.5).
    # 0 turns the cap off.
    tanh_cap: float = 1.5

    # -- learner (ppo, reinforce)
    # Rewards per learner update; the update happens on the tell that completes a batch. 8 gives ~60 updates in a
    # 500-child search; with 16 REINFORCE (one step per batch) learned less within 500 proposals on the synthetic task.
    batch_size: int = 8
    # Adam learning rate (0.003 and 0.01 learned less within 500 proposals on the synthetic task, 0.04 was no better).
    lr: float = 0.02
    # PPO epochs (full-batch Adam steps) over each batch: reuses each reward several times; reinforce always does 1.
    epochs: int = 4
    # PPO clip range: the probability ratio to the policy at the start of the update is clipped to [1 - clip, 1 + clip]
    # (Schulman et al.'s 0.2), so several epochs cannot move one token string's probability far.
    clip: float = 0.2
    # Weight of the entropy bonus (entropy of the token string, in nats, ~19 for a uniform 2-unit policy) in the loss:
    # resists collapsing onto one candidate before the rewards say so.
    entropy_weight: float = 0.01
    # Decay of the exponential moving average of rewards that serves as the baseline, per reward (bias-corrected;
    # updated after the batch's advantages are computed). 0.95 remembers about 20 rewards: one or two batches.
    baseline_decay: float = 0.95
    # Divide advantages by a running reward scale (EMA of squared deviations from the baseline), so the step size and
    # the entropy weight mean the same whether rewards differ by 0.01 (accuracies) or 0.5.
    normalize_advantages: bool = True
    # Gradient norm clip (max L2 norm of all policy gradients) per optimizer step: guards against one huge importance
    # weight from a very stale reward; 0 turns it off.
    grad_clip: float = 1.0

    # -- regularized evolution
    # Population size: the most recently rewarded candidates; the first this-many proposals are random. Small enough
    # that selection starts early in a 500-child search (Real et al. use 100 for 20,000).
    population_size: int = 32
    # Candidates drawn (without replacement) per tournament; the best becomes a parent. A quarter of the population:
    # strong enough selection to climb, weak enough that the best does not parent every child.
    tournament_size: int = 8
    # Probability that a child is a crossover of two parents' core units (then mutated); 0 = mutation only, as in
    # Real et al. (crossover at 0.5 did not help on the synthetic task).
    crossover_prob: float = 0.0

    def problems(self) -> list[tuple[str, str]]:
        """``(field, what is wrong and what is allowed)`` for every bad value; empty when the settings are usable."""
        out: list[tuple[str, str]] = []

        def need(name: str, ok: bool, allowed: str) -> None:
            if not ok:
                out.append((name, f"must be {allowed}, got {getattr(self, name)!r}"))

        need("kind", self.kind in KINDS, "one of " + ", ".join(KINDS))
        need("hidden_size", self.hidden_size >= 1, ">= 1")
        need("embedding_size", self.embedding_size >= 1, ">= 1")
        need("num_layers", self.num_layers >= 1, ">= 1")
        need("temperature", self.temperature > 0, "> 0")
        need("tanh_cap", self.tanh_cap >= 0, ">= 0 (0 = no cap)")
        need("batch_size", self.batch_size >= 1, ">= 1")
        need("lr", self.lr > 0, "> 0")
        need("epochs", self.epochs >= 1, ">= 1")
        need("clip", self.clip > 0, "> 0")
        need("entropy_weight", self.entropy_weight >= 0, ">= 0")
        need("baseline_decay", 0 <= self.baseline_decay < 1, "in [0, 1)")
        need("grad_clip", self.grad_clip >= 0, ">= 0 (0 = no clipping)")
        need("population_size", self.population_size >= 2, ">= 2")
        need("tournament_size", 1 <= self.tournament_size <= self.population_size,
             f">= 1 and <= population_size ({self.population_size})")
        need("crossover_prob", 0 <= self.crossover_prob <= 1, "in [0, 1]")
        return out
