"""The policy's learner: PPO with a rank or moving-average baseline; REINFORCE is the same learner configured down.

One update per ``batch_size`` rewards (in the order they were told):

1. Advantages. Two ways, chosen by ``rank_window``:

   - Ranks (``rank_window > 0``, the default). Each reward's advantage is its mid-rank among the reference rewards,
     the ``rank_window`` most recent rewards of earlier batches plus the other rewards of its own batch:
     ``A = sqrt(12) * ((#below + #equal / 2) / #reference - 1/2)``, a number in [-1.73, 1.73] with unit variance
     (``sqrt(12)``: the standard deviation of a uniform percentile is ``1/sqrt(12)``). A reward is never compared with
     itself (the leave-one-out baseline of Kool et al. 2019: the others of its batch were sampled independently of
     it, so the estimator stays unbiased), and the first batch, without history, is ranked within itself. Why ranks:
     a search's rewards are a mixture, the penalty 0 for screened and failed candidates and accuracies near 0.9 that
     differ by 0.01 among trained children; a moving mean and standard deviation over that mixture are dominated by
     the zeros: with 20% zeros the scale is ~0.44 for a spread of 0.01 among trained children, so within a batch
     their advantages differ by ~0.02 (0.9 without the zeros), less than the baseline's wobble from batch to batch
     as zeros come and go (~0.12). Ranks keep them ~0.74 apart, and the zeros below them, whatever the mixture
     (``benchmarks/advantage_scale.py``).
   - Moving average (``rank_window = 0``). ``A = (R - b) / s`` where ``b`` is the bias-corrected EMA (decay
     ``baseline_decay`` per reward) of all earlier rewards, and ``s`` the square root of the bias-corrected EMA of
     squared deviations ``(R - b)^2``, this batch's included (``normalize_advantages=False`` keeps ``s = 1``).
     **The baseline is updated after the batch's advantages are computed**, so no reward is compared with a baseline
     it contributed to. The first batch has no history: its baseline is its own mean. Bias correction (dividing an
     EMA by ``1 - decay^n`` after ``n`` rewards) keeps the early baseline from being dragged towards the EMA's zero.
2. Off-policy correction. Workers finish out of order, so a reward may belong to a proposal sampled by an older policy
   (the behaviour policy, whose log-probability the proposal carries). As in decoupled PPO (Hilton et al. 2021,
   "Batch size-invariance for policy optimization"), the objective is
   ``w * min(r A, clip(r, 1 - clip, 1 + clip) A)`` with ``r = pi / pi_prox`` (``pi_prox``: the policy at the start of
   this update) and ``w = pi_prox / pi_behaviour`` (an importance weight, not clipped: no bias; for rewards of the
   current policy ``w = 1``). Every reward moves the policy at the first epoch (``r = 1`` there), however stale.
3. Up to ``epochs`` full-batch Adam steps on ``-objective - entropy_weight * entropy`` with the gradient norm clipped.
   Before each step after the first, the KL divergence from ``pi_prox`` along the batch is estimated
   (``mean(r - 1 - log r)``, Schulman's low-variance estimator); once it exceeds ``target_kl`` no more steps are taken
   (early stopping as in common PPO implementations): the clip bounds what each token string contributes, but Adam
   steps move every probability at once, so only a small step keeps the ratios inside the clip range.

REINFORCE (``reinforce=True``): one epoch, no clipping, no KL stop: the gradient is ``w * A * grad log pi``.

Update stats (the run loop writes every one into run.log): mean / max reward, baseline (rank mode: the median of the
reference rewards), entropy, ``approx_kl`` and ``clip_fraction`` of the policy after the update against ``pi_prox``
along the batch (the KL estimate above; the share of the batch whose ratio left [1 - clip, 1 + clip]), ``epochs`` (the
steps taken), importance weight, staleness, loss and gradient norm.
"""
from __future__ import annotations

import copy
import math
import statistics
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # an annotation only: controller.settings imports the proposers
    from controller.settings import ControllerSettings

_RANK_STD = math.sqrt(12.0)  # 1 / the standard deviation of a uniform percentile: rank advantages get unit variance


def rank_advantages(rewards: list[float], history: list[float]) -> list[float]:
    """Advantage of each reward of a batch: its centred mid-rank among ``history`` and the batch's other rewards.

    rewards: the batch, in order; history: earlier rewards (any order). Returns one advantage per reward in
    [-sqrt(3), sqrt(3)] (0 when there is nothing to compare with: a batch of one and no history).
    """
    out = []
    for i, r in enumerate(rewards):
        reference = history + rewards[:i] + rewards[i + 1:]
        if not reference:
            out.append(0.0)
            continue
        below = sum(h < r for h in reference)
        equal = sum(h == r for h in reference)
        out.append(_RANK_STD * ((below + 0.5 * equal) / len(reference) - 0.5))
    return out


def kl_estimate(log_ratio: torch.Tensor) -> float:
    """``mean(r - 1 - log r)`` with ``r = exp(log_ratio)``: an estimate of KL(old || new) from samples of the old
    policy, never negative (Schulman, "Approximating KL divergence", 2020)."""
    return (torch.expm1(log_ratio) - log_ratio).mean().item()


class Learner:
    """Batches rewards and updates ``policy`` (a ``controller.policy.Policy``).

    add(index, token_indices, behaviour_logp, policy_version, reward) -> update record or None.
    state_dict() / load_state_dict(): optimizer, baseline or rank history, buffered rewards and version.
    """

    def __init__(self, policy, settings: ControllerSettings, reinforce: bool = False):
        self.policy = policy
        self.reinforce = reinforce
        self.batch_size = settings.batch_size
        self.epochs = 1 if reinforce else settings.epochs
        self.clip = None if reinforce else settings.clip
        self.clip_range = settings.clip  # for clip_fraction, reported by reinforce too
        self.target_kl = None if reinforce or settings.target_kl <= 0 else settings.target_kl
        self.entropy_weight = settings.entropy_weight
        self.rank_window = settings.rank_window
        self.decay = settings.baseline_decay
        self.normalize = settings.normalize_advantages
        self.grad_clip = settings.grad_clip
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=settings.lr)
        self.version = 0
        self.buffer: list[dict] = []
        self.history: list[float] = []  # rank mode: the latest rank_window rewards, oldest first
        self.rewards_seen = 0  # rewards folded into the EMAs
        self.mean_ema = 0.0  # EMA of rewards (before bias correction)
        self.var_ema = 0.0  # EMA of squared deviations from the baseline (before bias correction)

    # -- baseline

    def baseline(self) -> tuple[float, float] | None:
        """Bias-corrected (baseline, scale) of the moving averages; None before the first update or in rank mode."""
        if self.rewards_seen == 0:
            return None
        correction = 1.0 - self.decay ** self.rewards_seen
        return self.mean_ema / correction, math.sqrt(max(self.var_ema / correction, 0.0))

    def _fold(self, rewards: list[float], base: float) -> None:
        for r in rewards:
            self.var_ema = self.decay * self.var_ema + (1 - self.decay) * (r - base) ** 2
            self.mean_ema = self.decay * self.mean_ema + (1 - self.decay) * r
            self.rewards_seen += 1

    def advantages(self, rewards: list[float]) -> tuple[torch.Tensor, float]:
        """(advantages (float32, one per reward), baseline) for a batch; folds the batch into the history / EMAs."""
        if self.rank_window > 0:
            advantages = torch.tensor(rank_advantages(rewards, self.history))
            base = statistics.median(self.history or rewards)  # the reward that would rank in the middle
            self.history = (self.history + rewards)[-self.rank_window:]
            return advantages, base
        values = torch.tensor(rewards, dtype=torch.float64)
        previous = self.baseline()
        base = values.mean().item() if previous is None else previous[0]
        self._fold(rewards, base)  # after choosing the baseline: see the module docstring
        advantages = values - base
        if self.normalize:
            scale = self.baseline()[1]  # includes this batch, so a first spread of rewards is never divided by 0
            advantages = advantages / scale if scale > 1e-12 else torch.zeros_like(advantages)
        return advantages.float(), base

    # -- updates

    def add(self, index: int, token_indices, behaviour_logp: float, policy_version: int, reward: float) -> dict | None:
        self.buffer.append({"index": index, "tokens": list(token_indices), "logp": float(behaviour_logp),
                            "version": int(policy_version), "reward": float(reward)})
        if len(self.buffer) < self.batch_size:
            return None
        batch, self.buffer = self.buffer, []
        return self._update(batch)

    def _update(self, batch: list[dict]) -> dict:
        rewards = [b["reward"] for b in batch]
        advantages, base = self.advantages(rewards)

        indices = torch.tensor([b["tokens"] for b in batch], dtype=torch.long)
        behaviour = torch.tensor([b["logp"] for b in batch])

        prox = weight = entropy0 = grad_norm = loss_value = after = None
        steps = 0
        for epoch in range(self.epochs):
            logp, entropy = self.policy.evaluate(indices)
            if epoch == 0:
                prox = logp.detach()  # pi_prox: the policy at the start of this update
                weight = torch.exp(prox - behaviour)
                entropy0 = entropy.mean().item()
            elif self.target_kl is not None and kl_estimate((logp - prox).detach()) > self.target_kl:
                after = logp.detach()  # this pass already evaluated the policy after the last step
                break  # far enough from pi_prox: a further step would leave the region the clip assumes
            ratio = torch.exp(logp - prox)
            surrogate = ratio * advantages
            if self.clip is not None:
                surrogate = torch.minimum(surrogate, ratio.clamp(1 - self.clip, 1 + self.clip) * advantages)
            loss = -(weight * surrogate).mean() - self.entropy_weight * entropy.mean()
            self.optimizer.zero_grad()
            loss.backward()
            limit = self.grad_clip if self.grad_clip > 0 else math.inf  # inf: measure the norm, clip nothing
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), limit).item()
            self.optimizer.step()
            steps += 1
            loss_value = loss.item()
        if after is None:
            with torch.no_grad():
                after, _ = self.policy.evaluate(indices)
        log_ratio = after - prox
        outside = (log_ratio.exp() - 1).abs().gt(self.clip_range)  # ratios that left [1 - clip, 1 + clip]
        self.version += 1
        stats = {
            "mean_reward": sum(rewards) / len(rewards),
            "max_reward": max(rewards),
            "baseline": base,
            "entropy": entropy0,  # of the policy that started the update, along the batch's token strings
            "approx_kl": kl_estimate(log_ratio),  # of the policy after the update from pi_prox, along the batch
            "clip_fraction": outside.float().mean().item(),
            "epochs": steps,
            "importance_weight_max": weight.max().item(),
            "staleness": sum(self.version - 1 - b["version"] for b in batch) / len(batch),
            "loss": loss_value,
            "grad_norm": grad_norm,
        }
        return {"version": self.version, "consumed": [b["index"] for b in batch], "stats": stats}

    # -- state

    def state_dict(self) -> dict:
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict()), "version": self.version,
                "buffer": copy.deepcopy(self.buffer), "history": list(self.history),
                "rewards_seen": self.rewards_seen, "mean_ema": self.mean_ema, "var_ema": self.var_ema}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        self.buffer = copy.deepcopy(state["buffer"])
        self.history = [float(r) for r in state.get("history", [])]  # absent in states saved before rank advantages
        self.rewards_seen = int(state["rewards_seen"])
        self.mean_ema = float(state["mean_ema"])
        self.var_ema = float(state["var_ema"])
