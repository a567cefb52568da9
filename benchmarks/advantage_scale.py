"""How screened / failed zeros among the rewards change the advantages the learner gives trained children.

A stream of rewards as a real search tells them: a share ``--zeros`` of the candidates are screened or failed (reward
0), the rest are trained children with accuracy ``0.95 + N(0, 0.01)``. Batches of ``batch_size`` go through the
learner's advantage computation (``Learner.advantages``: the moving-average baseline and scale when
``rank_window = 0``, ranks otherwise). Reported, over the trained children after a warm-up of 20 batches:

- within-batch spread: the standard deviation of advantages among the trained children of one batch, averaged over
  batches: how strongly the update tells better trained children from worse ones (the signal);
- across-batch wobble: the standard deviation of the batch means of those advantages: how much the baseline moves
  from batch to batch (noise common to a batch, caused by the zeros coming and going);
- correlation of advantage and accuracy among the trained children of a batch, averaged over batches;
- zeros' mean advantage.

    .venv/bin/python benchmarks/advantage_scale.py
"""
from __future__ import annotations

import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from controller.learner import Learner  # noqa: E402
from controller.settings import ControllerSettings  # noqa: E402


def measure(zero_share: float, rank_window: int, batches: int = 600, seed: int = 0) -> dict:
    """Advantage statistics of one stream (see the module docstring)."""
    rng = random.Random(seed)
    settings = ControllerSettings(rank_window=rank_window)
    learner = Learner(torch.nn.Linear(1, 1), settings)  # only the advantage computation is used
    spread, wobble, corr, zeros = [], [], [], []
    for b in range(batches):
        rewards = [0.0 if rng.random() < zero_share else 0.95 + rng.gauss(0, 0.01) for _ in range(settings.batch_size)]
        advantages = learner.advantages(rewards)[0].tolist()
        if b < 20:
            continue
        trained = [(a, r) for a, r in zip(advantages, rewards) if r > 0]
        zeros += [a for a, r in zip(advantages, rewards) if r == 0]
        if len(trained) >= 3:
            a, r = zip(*trained)
            spread.append(statistics.pstdev(a))
            wobble.append(statistics.mean(a))
            if statistics.pstdev(a) > 0:
                corr.append(statistics.correlation(a, r))
    return {"within_batch_spread": statistics.mean(spread), "across_batch_wobble": statistics.pstdev(wobble),
            "correlation": statistics.mean(corr), "zeros_mean": statistics.mean(zeros) if zeros else float("nan")}


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, and no other arguments
    print("advantages of trained children (accuracy 0.95 +- 0.01) among zeros (screened / failed), batch 8")
    print("| advantages | zeros | within-batch spread | across-batch wobble | corr(advantage, accuracy) "
          "| zeros' mean |")
    print("|---|---|---|---|---|---|")
    for label, window in (("moving average (rank_window 0)", 0),
                          (f"ranks (rank_window {ControllerSettings().rank_window or 32})",
                           ControllerSettings().rank_window or 32)):
        for share in (0.0, 0.2, 0.5):
            m = measure(share, window)
            print(f"| {label} | {share:.0%} | {m['within_batch_spread']:.3f} | {m['across_batch_wobble']:.3f} | "
                  f"{m['correlation']:.2f} | {m['zeros_mean']:.2f} |")


if __name__ == "__main__":
    main()
