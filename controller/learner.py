"""The policy's learner: PPO with an exponential-moving-average baseline; REINFORCE is the same learner configured down.

One update per ``batch_size`` rewards (in the order they were told):

1. Advantages. ``A = (R - b) / s`` where ``b`` is the bias-corrected EMA (decay ``baseline_decay`` per reward) of
   all earlier rewards, and ``s`` the square root of the bias-corrected EMA of squared deviations ``(R - b)^2``, this
   batch's included: a running reward scale, so the step size and the entropy weight mean the same whatever the
   reward's scale (accuracies differing by 0.01 or similarities by 0.5); ``normalize_advantages=False`` keeps ``s = 1``.
   Order: **the baseline is updated after the batch's advantages are computed**, so no reward is compared with a
   baseline it contributed to (that would shrink every advantage towards zero and bias it). The first batch has no
   history: its baseline is its own mean. Bias correction (dividing an EMA by ``1 - decay^n`` after ``n`` rewards)
   keeps the early baseline from being dragged towards the EMA's zero start.
2. Off-policy correction. Workers finish out of order, so a reward may belong to a proposal sampled by an older policy
   (the behaviour policy, whose log-probability the proposal carries). As in decoupled PPO (Hilton et al. 2021,
   "Batch size-invariance for policy optimization"), the objective is
   ``w * min(r A, clip(r, 1 - clip, 1 + clip) A)`` with ``r = pi / pi_prox`` (``pi_prox``: the policy at the start of
   this update) and ``w = pi_prox / pi_behaviour`` (an importance weight, not clipped: no bias; for rewards of the
   current policy ``w = 1``). Every reward moves the policy at the first epoch (``r = 1`` there), however stale.
3. Several epochs of full-batch Adam steps on ``-objective - entropy_weight * entropy`` with the gradient norm clipped.

REINFORCE (``reinforce=True``): one epoch, no clipping: the gradient is ``w * A * grad log pi``, the classic estimator.
"""
from __future__ import annotations

import copy
import math

import torch

from controller.settings import ControllerSettings


class Learner:
    """Batches rewards and updates ``policy`` (a ``controller.policy.Policy``).

    add(index, token_indices, behaviour_logp, policy_version, reward) -> update record or None.
    state_dict() / load_state_dict(): optimizer, baseline, buffered rewards and version.
    """

    def __init__(self, policy, settings: ControllerSettings, reinforce: bool = False):
        self.policy = policy
        self.reinforce = reinforce
        self.batch_size = settings.batch_size
        self.epochs = 1 if reinforce else settings.epochs
        self.clip = None if reinforce else settings.clip
        self.entropy_weight = settings.entropy_weight
        self.decay = settings.baseline_decay
        self.normalize = settings.normalize_advantages
        self.grad_clip = settings.grad_clip
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=settings.lr)
        self.version = 0
        self.buffer: list[dict] = []
        self.rewards_seen = 0  # rewards folded into the EMAs
        self.mean_ema = 0.0  # EMA of rewards (before bias correction)
        self.var_ema = 0.0  # EMA of squared deviations from the baseline (before bias correction)

    # -- baseline

    def baseline(self) -> tuple[float, float] | None:
        """Bias-corrected (baseline, scale) from the rewards so far; None before the first update."""
        if self.rewards_seen == 0:
            return None
        correction = 1.0 - self.decay ** self.rewards_seen
        return self.mean_ema / correction, math.sqrt(max(self.var_ema / correction, 0.0))

    def _fold(self, rewards: list[float], base: float) -> None:
        for r in rewards:
            self.var_ema = self.decay * self.var_ema + (1 - self.decay) * (r - base) ** 2
            self.mean_ema = self.decay * self.mean_ema + (1 - self.decay) * r
            self.rewards_seen += 1

    # -- updates

    def add(self, index: int, token_indices, behaviour_logp: float, policy_version: int, reward: float) -> dict | None:
        self.buffer.append({"index": index, "tokens": list(token_indices), "logp": float(behaviour_logp),
                            "version": int(policy_version), "reward": float(reward)})
        if len(self.buffer) < self.batch_size:
            return None
        batch, self.buffer = self.buffer, []
        return self._update(batch)

    def _update(self, batch: list[dict]) -> dict:
        rewards = torch.tensor([b["reward"] for b in batch], dtype=torch.float64)
        previous = self.baseline()
        base = rewards.mean().item() if previous is None else previous[0]
        self._fold(rewards.tolist(), base)  # after choosing the baseline: see the module docstring
        advantages = rewards - base
        if self.normalize:
            scale = self.baseline()[1]  # includes this batch, so a first spread of rewards is never divided by 0
            advantages = advantages / scale if scale > 1e-12 else torch.zeros_like(advantages)
        advantages = advantages.float()

        indices = torch.tensor([b["tokens"] for b in batch], dtype=torch.long)
        behaviour = torch.tensor([b["logp"] for b in batch])
        with torch.no_grad():
            prox, _ = self.policy.evaluate(indices)
        weight = torch.exp(prox - behaviour)

        entropy0 = clipped = grad_norm = loss_value = None
        for epoch in range(self.epochs):
            logp, entropy = self.policy.evaluate(indices)
            ratio = torch.exp(logp - prox)
            surrogate = ratio * advantages
            if self.clip is not None:
                clipped_ratio = ratio.clamp(1 - self.clip, 1 + self.clip)
                surrogate = torch.minimum(surrogate, clipped_ratio * advantages)
                clipped = (ratio - clipped_ratio).abs().gt(0).float().mean().item()
            loss = -(weight * surrogate).mean() - self.entropy_weight * entropy.mean()
            self.optimizer.zero_grad()
            loss.backward()
            limit = self.grad_clip if self.grad_clip > 0 else math.inf  # inf: measure the norm, clip nothing
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), limit).item()
            self.optimizer.step()
            if epoch == 0:
                entropy0 = entropy.mean().item()
            loss_value = loss.item()
        with torch.no_grad():
            after, _ = self.policy.evaluate(indices)
        self.version += 1
        stats = {
            "mean_reward": rewards.mean().item(),
            "max_reward": rewards.max().item(),
            "baseline": base,
            "entropy": entropy0,  # of the policy that started the update, along the batch's token strings
            "approx_kl": (prox - after).mean().item(),
            "importance_weight_max": weight.max().item(),
            "staleness": sum(self.version - 1 - b["version"] for b in batch) / len(batch),
            "loss": loss_value,
            "grad_norm": grad_norm,
            "clip_fraction": clipped,
        }
        return {"version": self.version, "consumed": [b["index"] for b in batch], "stats": stats}

    # -- state

    def state_dict(self) -> dict:
        return {"optimizer": copy.deepcopy(self.optimizer.state_dict()), "version": self.version,
                "buffer": copy.deepcopy(self.buffer), "rewards_seen": self.rewards_seen,
                "mean_ema": self.mean_ema, "var_ema": self.var_ema}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
        self.buffer = copy.deepcopy(state["buffer"])
        self.rewards_seen = int(state["rewards_seen"])
        self.mean_ema = float(state["mean_ema"])
        self.var_ema = float(state["var_ema"])
