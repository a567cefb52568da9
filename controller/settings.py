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
    # LSTM hidden units: small because the sequence is short (5 tokens per core unit) and sampling must stay cheap.
    hidden_size: int = 64
    # Size of the learned embedding of each sampled token, fed back as the next step's input.
    embedding_size: int = 32
    # Stacked LSTM layers.
    num_layers: int = 1
    # Sampling temperature: logits are divided by it (> 1 explores more). The learner trains this same distribution.
    temperature: float = 1.0
    # Logits are squashed to cap * tanh(logits / cap): no token's probability can fall below ~e^(-2 cap) of the most
    # likely one's, so the policy keeps exploring (1.5 found the synthetic target most often; Zoph & Le use 2.5).
    # 0 turns the cap off.
    tanh_cap: float = 1.5

    # -- learner (ppo, reinforce)
    # Rewards per learner update; the update happens on the tell that completes a batch.
    batch_size: int = 16
    # Adam learning rate.
    lr: float = 0.01
    # PPO epochs over each batch (reinforce always does 1).
    epochs: int = 4
    # PPO clip range: the probability ratio to the policy at the start of the update is clipped to [1 - clip, 1 + clip].
    clip: float = 0.2
    # Weight of the entropy bonus in the loss: resists collapsing onto one candidate before the reward says so.
    entropy_weight: float = 0.01
    # Decay of the exponential moving average of rewards that serves as the baseline (per reward; bias-corrected).
    baseline_decay: float = 0.95
    # Divide each batch's advantages by their standard deviation, so the step size does not depend on the reward scale.
    normalize_advantages: bool = True
    # Gradient norm clip (max L2 norm of all policy gradients) per optimizer step; 0 turns it off.
    grad_clip: float = 1.0

    # -- regularized evolution
    # Population size: the most recently rewarded candidates; the first this-many proposals are random.
    population_size: int = 32
    # Candidates drawn (without replacement) per tournament; the best becomes a parent.
    tournament_size: int = 8
    # Probability that a child is a crossover of two parents' core units (then mutated); 0 = mutation only.
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
