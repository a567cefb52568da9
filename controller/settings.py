"""``ControllerSettings``: the ``controller:`` section of a search config (which proposer, and every knob it has)."""
from __future__ import annotations

from dataclasses import dataclass

from controller.kinds import KINDS
from search.language.checks import Problems


@dataclass
class ControllerSettings:
    """Which proposer proposes candidates, and its settings. Knobs a proposer does not use are ignored by it."""

    # Proposer: "ppo" (RNN policy, PPO), "reinforce" (same policy and learner: one epoch, no clipping), "random"
    # (uniform over token strings), "exhaustive" (every distinct function once), "evolution" (regularized evolution),
    # "surrogate" (a Gaussian process on the functions' shapes picks the most promising, a batch at a time).
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
    # Adam learning rate. An Adam step moves every logit at once, so lr sets how far one step moves the policy. At 0.02
    # one step moved a batch's token strings by a median KL of ~0.05-0.09 nats (REINFORCE; 90th percentile 0.34) and
    # PPO's 4 epochs by 0.5-1.2 nats, every ratio far outside the clip range. At 0.005 one step moves them ~0.01-0.03
    # nats, and both learners still beat random search as clearly within 500 proposals (REINFORCE learns a little
    # slower in the first 300; 0.003 was clearly slower for REINFORCE). Synthetic task, seeds 1000-1039.
    lr: float = 0.005
    # PPO epochs: at most this many full-batch Adam steps over each batch, fewer when target_kl stops them; reinforce
    # always does 1.
    epochs: int = 4
    # PPO clip range, from 0 to 1 (exclusive): the probability ratio to the policy at the start of the update is
    # clipped to [1 - clip, 1 + clip] (Schulman et al.'s 0.2). The clip only stops rewarding a token string for moving
    # further; it cannot stop an Adam step that moves every probability at once (at lr 0.02 and 4 epochs the batch's
    # ratios all ended outside the range: clip fraction 1.0), so lr and target_kl keep the update small.
    clip: float = 0.2
    # PPO early stop: no further epoch once the KL divergence (nats) from the policy that started the update, estimated
    # along the batch, exceeds this; 0 = off. Measured at the defaults (synthetic task, 40 seeds, ~2,500 updates): 1.4
    # steps per update, KL per update median 0.025 (90th percentile 0.05), share of the batch whose ratio ended outside
    # the clip range median 0.38 (90th percentile 0.62); learning as with 0.02, which doubles the KL.
    target_kl: float = 0.01
    # Weight of the entropy bonus (entropy of the token string, in nats, ~19 for a uniform 2-unit policy) in the loss:
    # resists collapsing onto one candidate before the rewards say so.
    entropy_weight: float = 0.01
    # Advantages from ranks (controller/learner.py): each reward's mid-rank among the this-many latest rewards of
    # earlier batches and the other rewards of its batch, scaled to unit variance; 0 = the moving-average baseline and
    # scale below. In a search screened and failed candidates get 0 while trained ones differ by ~0.01 around 0.9: with
    # 20% zeros a moving mean and scale leave trained children's advantages 0.02 apart, ranks 0.74 (0.9 without zeros;
    # benchmarks/advantage_scale.py). 32: four batches of 8. On the synthetic task ranks learned as well or better,
    # with less spread from seed to seed.
    rank_window: int = 32
    # Only with rank_window 0: decay of the exponential moving average of rewards that serves as the baseline, per
    # reward (bias-corrected; updated after the batch's advantages are computed). 0.95 remembers about 20 rewards.
    baseline_decay: float = 0.95
    # Only with rank_window 0: divide advantages by a running reward scale (EMA of squared deviations from the
    # baseline), so the step size and the entropy weight mean the same whether rewards differ by 0.01 or 0.5.
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

    # -- surrogate (controller/surrogate.py)
    # Proposals drawn uniformly at random (distinct functions) before the model chooses: its first evidence (later ones
    # too while every reward so far is equal). 16 found the synthetic target sooner than 32 (one unit: after 46 vs 50
    # proposals on average, seeds 100-119; two units: 49 vs 55, seeds 100-105).
    surrogate_initial: int = 16
    # Upper confidence bound mean + kappa * sd, in units of the rewards' normal scores: 0 takes the best predicted
    # function, larger values explore where the model is unsure (1, 2 and 3 found the synthetic target equally fast).
    surrogate_kappa: float = 2.0
    # Spaces of more than 50,000 token strings (two or more core units): functions the model chooses among, the
    # latest sampled (256 new per ask: random token strings and mutations of the best). Smaller spaces are enumerated.
    surrogate_pool: int = 2000

    def problems(self) -> list[tuple[str, str]]:
        """``(field, what is wrong and what is allowed)`` for every bad value; empty when the settings are usable. Each
        kind checks the knobs it reads; every knob is checked whichever kind runs (a bad value is never silently
        kept for a later run of another kind)."""
        out = Problems()
        out.one_of("kind", self.kind, tuple(KINDS))
        for kind in {type(k): k for k in KINDS.values()}.values():
            out += kind.problems(self)
        return out
