"""How robust are the learning tests? Every statistic of ``tests/test_learning.py``, on seeds the test does not use.

Reads runs made by ``benchmarks/seed_runs.py`` (default settings, the test's budget, target and space), cuts the
seeds into disjoint blocks of the test's size (``len(SEEDS)``), and for each assertion prints the statistic's mean
and standard deviation over the blocks, the worst block, its threshold, and two estimates of the probability that a
fresh set of seeds fails (which is what another machine's rounding amounts to): the share of 20,000 seed sets
resampled with replacement from all the seeds that fail, and the normal tail beyond the threshold,
``Phi(-(mean - threshold) / sd)`` with the resampled sets' mean and standard deviation. Example:

    .venv/bin/python benchmarks/seed_runs.py --seeds 100-299 --budget 500 --workers 2 --out /tmp/study.jsonl
    .venv/bin/python benchmarks/seed_blocks.py /tmp/study.jsonl
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import test_learning as T  # noqa: E402

STATUS = {"n": "new", "d": "duplicate", "s": "screened", "p": "pending"}


def load(path: str, overrides: dict) -> dict[str, dict[int, dict]]:
    """kind -> seed -> run (in ``search_synthetic``'s form) for the test's budget, target and space."""
    out: dict[str, dict[int, dict]] = collections.defaultdict(dict)
    for line in Path(path).read_text().splitlines():
        d = json.loads(line)
        if (d["budget"] != T.BUDGET or d.get("target") != T.TARGET or d.get("core_units", 2) != T.SPACE.core_units
                or d.get("band") or d.get("noise", 0.0) or d["set"] != (overrides if d["kind"] != "random" else {})):
            continue
        out[d["kind"]][d["seed"]] = {"rewards": d["rewards"], "status": [STATUS[c] for c in d["status"]],
                                     "updates": [{"stats": u} for u in d["updates"]]}
    return out


def checks() -> list[tuple[str, str, float, object]]:
    """(assertion, kind, threshold, statistic of {kind: [runs]} with the same seeds) for every assertion; statistics
    are oriented so that larger is better (a maximum becomes minus the value)."""
    out = []
    for kind in T.LEARNERS:
        out.append((f"top-{T.TOP} gain over random", kind, T.MIN_TOP_GAIN,
                    lambda r, k=kind: T.top_gain(r[k], r["random"])))
    for kind in ("ppo", "reinforce"):
        out.append(("reward rise", kind, T.MIN_REWARD_RISE, lambda r, k=kind: T.reward_rise(r[k])))
        out.append(("entropy drop", kind, T.MIN_ENTROPY_DROP, lambda r, k=kind: T.entropy_drop(r[k])))
    out.append(("-median approx_kl", "ppo", -T.MAX_MEDIAN_KL,
                lambda r: -T.median_update_stat(r["ppo"], "approx_kl")))
    out.append(("-median clip_fraction", "ppo", -T.MAX_MEDIAN_CLIP_FRACTION,
                lambda r: -T.median_update_stat(r["ppo"], "clip_fraction")))
    out.append(("mean reward rise", "evolution", T.MIN_EVOLUTION_RISE, lambda r: T.evolution_rise(r["evolution"])))
    for kind in T.LEARNERS:
        out.append(("-screened share", kind, -T.MAX_SCREENED_SHARE, lambda r, k=kind: -T.screened_share(r[k])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="JSON lines from benchmarks/seed_runs.py")
    parser.add_argument("--set", action="append", default=[], help="the learners' overrides of those runs")
    parser.add_argument("--resamples", type=int, default=20000)
    args = parser.parse_args()
    from benchmarks.seed_runs import parse_sets

    runs = load(args.runs, parse_sets(args.set))
    kinds = ("random",) + T.LEARNERS
    seeds = sorted(set.intersection(*(set(runs[k]) for k in kinds)))
    size = len(T.SEEDS)
    blocks = [seeds[i:i + size] for i in range(0, len(seeds) - size + 1, size)]
    rng = random.Random(0)
    resampled = [[rng.choice(seeds) for _ in range(size)] for _ in range(args.resamples)]
    print(f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]}), {len(blocks)} disjoint blocks of {size}, "
          f"{args.resamples} resampled sets of {size}; budget {T.BUDGET}")
    print("| assertion | kind | threshold | mean over blocks | sd | worst block | resampled: mean, sd | "
          "share failing | normal tail |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, kind, threshold, stat in checks():
        def on(chosen, stat=stat):
            return stat({k: [runs[k][s] for s in chosen] for k in kinds})

        per_block = [on(b) for b in blocks]
        per_set = [on(s) for s in resampled]
        mean, sd = statistics.mean(per_set), statistics.pstdev(per_set)
        failing = sum(v <= threshold for v in per_set) / len(per_set)
        tail = 0.5 * math.erfc((mean - threshold) / sd / math.sqrt(2)) if sd > 0 else float(mean <= threshold)
        print(f"| {name} | {kind} | {threshold:g} | {statistics.mean(per_block):.3f} | "
              f"{statistics.pstdev(per_block):.3f} | {min(per_block):.3f} | {mean:.3f}, {sd:.3f} | "
              f"{failing:.4f} | {tail:.1e} |")


if __name__ == "__main__":
    main()
