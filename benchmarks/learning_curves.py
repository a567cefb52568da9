"""Learning curves on the synthetic task: best-so-far reward after 100 / 250 / 500 proposals, median over seeds.

Every proposer kind with its default ``ControllerSettings``, in the 2-unit space, target ``x * sigmoid(x)``, driven by
``search.loop.local.search_synthetic`` (rewards through ``RewardBook``: screened candidates get 0, repeats their
recorded reward). Also counts, per kind, the seeds that found the target itself and the seeds that beat random search
at the same seed (higher best after the budget, or both found the target), the mean over seeds of the 5 best distinct
rewards minus random search's (the statistic of ``tests/test_learning.py``), and for the policy learners the median
``approx_kl`` and ``clip_fraction`` per update. The README's figures come from:

    .venv/bin/python benchmarks/learning_curves.py --seeds 0-9

``--runs FILE`` tabulates searches already made by ``benchmarks/seed_runs.py`` (default settings, the same budget,
target, space and noise) instead of running them; ``seconds`` is then their recorded time.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from controller import ControllerSettings, make_proposer
from search.language.space import Space
from search.loop.local import search_synthetic

KINDS = ("ppo", "reinforce", "evolution", "random")
CHECKPOINTS = (100, 250, 500)
OPTIMUM = 1.0 - 1e-9
TOP = 5  # distinct rewards averaged per search, as in tests/test_learning.py


def stored_runs(args) -> dict[str, dict[int, dict]]:
    """kind -> seed -> run from ``--runs`` (``benchmarks/seed_runs.py`` lines with default settings matching args)."""
    out: dict[str, dict[int, dict]] = {}
    with open(args.runs) as fh:
        for line in fh:
            d = json.loads(line)
            if (d["set"] or d.get("band") or d["budget"] != args.budget or d.get("target") != args.target
                    or d.get("core_units", 2) != args.core_units or d.get("noise", 0.0) != args.noise):
                continue
            out.setdefault(d["kind"], {})[d["seed"]] = d
    return out


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
    parser.add_argument("--runs", default=None, help="JSON lines of benchmarks/seed_runs.py to tabulate instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = Space(core_units=args.core_units)
    seeds = seed_range(args.seeds)
    kinds = args.kinds.split(",")
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget] or [args.budget]

    best: dict[str, list[list[float]]] = {}
    top: dict[str, list[float]] = {}
    updates: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    stored = stored_runs(args) if args.runs else None
    for kind in kinds:
        settings = ControllerSettings(kind=kind)
        start = time.perf_counter()
        best[kind], top[kind], updates[kind], seconds[kind] = [], [], [], 0.0
        for seed in seeds:
            if stored is not None:
                run = stored[kind][seed]
                seconds[kind] += run["seconds"]
            else:
                run = search_synthetic(make_proposer(settings, space, seed), space, args.budget, target=args.target,
                                       noise=args.noise, seed=seed)
                run["updates"] = [u["stats"] for u in run["updates"]]
            curve = [max(run["rewards"][:i + 1]) for i in range(len(run["rewards"]))]
            best[kind].append([curve[min(c, len(curve)) - 1] for c in checkpoints])
            top[kind].append(statistics.mean(sorted({round(r, 9) for r in run["rewards"]}, reverse=True)[:TOP]))
            updates[kind] += run["updates"]
        if stored is None:
            seconds[kind] = time.perf_counter() - start

    rows = {}
    for kind in kinds:
        finals = [b[-1] for b in best[kind]]
        row = {f"median_best_after_{c}": statistics.median(b[i] for b in best[kind]) for i, c in enumerate(checkpoints)}
        row["found_target"] = sum(f >= OPTIMUM for f in finals)
        if "random" in best and kind != "random":
            rivals = [b[-1] for b in best["random"]]
            row["beats_random"] = sum(f > r or (f >= OPTIMUM and r >= OPTIMUM) for f, r in zip(finals, rivals))
            row[f"top{TOP}_gain"] = statistics.mean(top[kind]) - statistics.mean(top["random"])
        if updates[kind] and updates[kind][0].get("approx_kl") is not None:
            row["median_kl"] = statistics.median(u["approx_kl"] for u in updates[kind])
            fractions = [u["clip_fraction"] for u in updates[kind] if u.get("clip_fraction") is not None]
            row["median_clip_fraction"] = statistics.median(fractions) if fractions else None
        row["seconds"] = seconds[kind]
        rows[kind] = row

    if args.json:
        print(json.dumps({"seeds": seeds, "budget": args.budget, "target": args.target, "noise": args.noise,
                          "core_units": args.core_units, "results": rows}, indent=2))
        return
    print(f"synthetic task: target {args.target!r}, {args.core_units} core units, {args.budget} proposals, "
          f"noise {args.noise}, seeds {args.seeds} ({len(seeds)}); {platform.machine()}, 1 thread")
    header = "| proposer | " + " | ".join(f"best after {c}" for c in checkpoints) + \
             f" | found the target | beats random | top-{TOP} gain | KL | clip fraction | seconds |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind, row in rows.items():
        cells = [f"{row[f'median_best_after_{c}']:.3f}" for c in checkpoints]
        beats = f"{row['beats_random']}/{len(seeds)}" if "beats_random" in row else "-"
        gain = f"{row[f'top{TOP}_gain']:+.3f}" if f"top{TOP}_gain" in row else "-"
        kl = f"{row['median_kl']:.3f}" if "median_kl" in row else "-"
        clip = f"{row['median_clip_fraction']:.2f}" if row.get("median_clip_fraction") is not None else "-"
        print(f"| {kind} | " + " | ".join(cells) + f" | {row['found_target']}/{len(seeds)} | {beats} | {gain} | {kl} | "
              f"{clip} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
