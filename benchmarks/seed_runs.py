"""Many seeded searches on the synthetic task, one JSON line per (kind, settings, seed): the raw material for checking
how a learning test's statistic varies from seed set to seed set (``benchmarks/seed_blocks.py``) and for choosing
controller settings.

Each line: ``kind``, ``set`` (the controller overrides), ``seed``, ``budget``, ``rewards`` and ``status`` (per proposal;
status as one letter: n new, d duplicate, s screened, p pending), ``updates`` (per learner update: mean_reward,
entropy, approx_kl, clip_fraction, epochs) and ``seconds``. ``--band LO,HI`` mimics a real task's rewards for the
proposer (the recorded rewards stay the similarities): an evaluated candidate with similarity ``s > 0`` is told
``LO + (HI - LO) * s`` (accuracies in a narrow band), everything else 0 (screened, failed, no better than a line).
Runs already in ``--out`` are skipped, so an interrupted sweep resumes. Examples:

    .venv/bin/python benchmarks/seed_runs.py --kinds random,ppo --seeds 100-299 --budget 250 --out /tmp/runs.jsonl
    .venv/bin/python benchmarks/seed_runs.py --kinds ppo --seeds 1000-1019 --set lr=0.005 --set epochs=2 --out ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.learning_curves import seed_range  # noqa: E402

UPDATE_KEYS = ("mean_reward", "entropy", "approx_kl", "clip_fraction", "epochs")


def parse_sets(items: list[str]) -> dict:
    """``["lr=0.005", "epochs=2"]`` -> ``{"lr": 0.005, "epochs": 2}`` (values read as YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key.strip()] = yaml.safe_load(value)
    return out


class Banded:
    """A proposer seen through ``--band``: tells ``lo + (hi - lo) * r`` for ``r > 0``, 0 otherwise."""

    def __init__(self, proposer, lo: float, hi: float):
        self.proposer, self.lo, self.hi = proposer, lo, hi

    def __getattr__(self, name):
        return getattr(self.proposer, name)

    def tell(self, proposal, reward):
        return self.proposer.tell(proposal, self.lo + (self.hi - self.lo) * reward if reward > 0 else 0.0)


def one_run(kind: str, overrides: dict, seed: int, budget: int, core_units: int, target: str, noise: float,
            band: tuple[float, float] | None = None) -> dict:
    """One search; returns the JSON line's dict."""
    import torch

    torch.set_num_threads(1)
    from controller import ControllerSettings, make_proposer
    from search.language.space import Space
    from search.loop.local import search_synthetic

    space = Space(core_units=core_units)
    settings = ControllerSettings(kind=kind, **overrides)
    start = time.perf_counter()
    proposer = make_proposer(settings, space, seed)
    if band is not None:
        proposer = Banded(proposer, *band)
    run = search_synthetic(proposer, space, budget, target=target, noise=noise, seed=seed)
    return {"kind": kind, "set": overrides, "seed": seed, "budget": budget, "core_units": core_units,
            "target": target, "noise": noise, "band": band, "rewards": run["rewards"],
            "status": "".join(s[0] for s in run["status"]),
            "updates": [{k: u["stats"].get(k) for k in UPDATE_KEYS} for u in run["updates"]],
            "seconds": time.perf_counter() - start}


def key_of(d: dict) -> str:
    return json.dumps([d["kind"], d["set"], d["seed"], d["budget"], d.get("core_units", 2), d.get("target"),
                       d.get("noise", 0.0), d.get("band")], sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="random,ppo,reinforce,evolution")
    parser.add_argument("--seeds", default="100-119")
    parser.add_argument("--budget", type=int, default=250)
    parser.add_argument("--core-units", type=int, default=2)
    parser.add_argument("--target", default="x * sigmoid(x)")
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--band", default=None, help="LO,HI: tell evaluated rewards squeezed into [LO, HI]")
    parser.add_argument("--set", action="append", default=[], help="controller override KEY=VALUE (repeatable)")
    parser.add_argument("--workers", type=int, default=1, help="processes (each one thread)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    overrides = parse_sets(args.set)
    band = [float(v) for v in args.band.split(",")] if args.band else None
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {key_of(json.loads(line)) for line in out.read_text().splitlines() if line.strip()}
    jobs = []
    for kind in args.kinds.split(","):
        for seed in seed_range(args.seeds):
            job = (kind, overrides if kind in ("ppo", "reinforce", "evolution") else {}, seed, args.budget,
                   args.core_units, args.target, args.noise, band)
            probe = {"kind": kind, "set": job[1], "seed": seed, "budget": args.budget, "core_units": args.core_units,
                     "target": args.target, "noise": args.noise, "band": band}
            if key_of(probe) not in done:
                done.add(key_of(probe))
                jobs.append(job)
    start = time.perf_counter()
    with out.open("a") as fh:
        if args.workers > 1:
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            with ProcessPoolExecutor(args.workers) as pool:
                for result in pool.map(one_run, *zip(*jobs), chunksize=1) if jobs else []:
                    fh.write(json.dumps(result) + "\n")
                    fh.flush()
        else:
            for job in jobs:
                fh.write(json.dumps(one_run(*job)) + "\n")
                fh.flush()
    print(f"{len(jobs)} runs in {time.perf_counter() - start:.0f} s -> {out}")


if __name__ == "__main__":
    main()
