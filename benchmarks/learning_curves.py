"""Learning curves on the synthetic task: best-so-far reward after 100 / 250 / 500 proposals, median over seeds.

Every proposer kind with its default ``ControllerSettings``, in the 2-unit space, target ``x * sigmoid(x)``, driven by
``evaluator.synthetic.search_synthetic`` (rewards through ``RewardBook``: screened candidates get 0, repeats their
recorded reward). Also counts, per kind, the seeds that found the target itself and the seeds that beat random search
at the same seed (higher best after the budget, or both found the target). The README's figures come from:

    .venv/bin/python benchmarks/learning_curves.py --seeds 0-9
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from controller import ControllerSettings, make_proposer
from evaluator.synthetic import search_synthetic
from search.space import Space

KINDS = ("ppo", "reinforce", "evolution", "random")
CHECKPOINTS = (100, 250, 500)
OPTIMUM = 1.0 - 1e-9


def seed_range(text: str) -> list[int]:
    """``"0-9"`` or ``"3"`` or ``"1,4,7"`` -> seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 10-29")
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--core-units", type=int, default=2)
    parser.add_argument("--target", default="x * sigmoid(x)")
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = Space(core_units=args.core_units)
    seeds = seed_range(args.seeds)
    kinds = args.kinds.split(",")
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget] or [args.budget]

    best: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}
    for kind in kinds:
        settings = ControllerSettings(kind=kind)
        start = time.perf_counter()
        best[kind] = []
        for seed in seeds:
            run = search_synthetic(make_proposer(settings, space, seed), space, args.budget, target=args.target,
                                   noise=args.noise, seed=seed)
            curve = run["best_so_far"]
            best[kind].append([curve[min(c, len(curve)) - 1] for c in checkpoints])
        seconds[kind] = time.perf_counter() - start

    rows = {}
    for kind in kinds:
        finals = [b[-1] for b in best[kind]]
        row = {f"median_best_after_{c}": statistics.median(b[i] for b in best[kind]) for i, c in enumerate(checkpoints)}
        row["found_target"] = sum(f >= OPTIMUM for f in finals)
        if "random" in best and kind != "random":
            rivals = [b[-1] for b in best["random"]]
            row["beats_random"] = sum(f > r or (f >= OPTIMUM and r >= OPTIMUM) for f, r in zip(finals, rivals))
        row["seconds"] = seconds[kind]
        rows[kind] = row

    if args.json:
        print(json.dumps({"seeds": seeds, "budget": args.budget, "target": args.target, "noise": args.noise,
                          "core_units": args.core_units, "results": rows}, indent=2))
        return
    print(f"synthetic task: target {args.target!r}, {args.core_units} core units, {args.budget} proposals, "
          f"noise {args.noise}, seeds {args.seeds} ({len(seeds)}); {platform.machine()}, 1 thread")
    header = "| proposer | " + " | ".join(f"best after {c}" for c in checkpoints) + \
             " | found the target | beats random | seconds |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind, row in rows.items():
        cells = [f"{row[f'median_best_after_{c}']:.3f}" for c in checkpoints]
        beats = f"{row['beats_random']}/{len(seeds)}" if "beats_random" in row else "-"
        print(f"| {kind} | " + " | ".join(cells) + f" | {row['found_target']}/{len(seeds)} | {beats} | "
              f"{row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
