"""Rank fidelity of the cheap table's child: does a 150-step child order functions as the 500-step proxy does?

A fixed random sample of ``--sample`` distinct functions of the one-unit space that pass the screen (seeded by
``--sample-seed``; the same sample on every machine) is trained with ``--seeds`` seeds at the cheap settings (the
config's child, default configs/table.yaml: 150 steps) and at the proxy's default 500 steps, in ``--workers``
processes. Printed: Spearman's rank correlation (scipy) between the two fidelities' seed means, the same within each
fidelity between two halves of its seeds (how well each fidelity agrees with itself: seed noise bounds any
correlation), and, with ``--table``, between the table's means and the 500-step means. Also the share of the 500-step
top 10% found in the cheap child's top 10%.

    .venv/bin/python benchmarks/table_fidelity.py --sample 100 --seeds 3 --json fidelity.json
    .venv/bin/python benchmarks/table_fidelity.py --from-json fidelity.json --table tables/mnist1d-150.json

(``--from-json``: the statistics of a saved measurement, without training again.) Functions that diverge score 0 at
both fidelities and agree trivially, so the correlation is also printed over the functions that trained ("ok") at
every seed of both, and over the better half of those, where the differences are small.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sample_functions(n: int, seed: int) -> list[str]:
    """``n`` distinct one-unit functions that pass the screen, drawn at random (fixed by ``seed``): canonical texts of
    each function's first token string."""
    from search.language.index import FunctionIndex
    from search.language.space import Space

    space = Space(core_units=1)
    texts = []
    for tokens in FunctionIndex.of(space).distinct().values():
        expr = space.decode(tokens)
        if expr.screen().ok:
            texts.append(expr.text)
    return random.Random(seed).sample(sorted(texts), n)


def train(job: tuple[dict, str, int]) -> tuple[str, int, int, float, float]:
    import torch

    from evaluator.settings import ChildSettings
    from evaluator.train import train_child

    settings, text, seed = job
    torch.set_num_threads(1)
    r = train_child(ChildSettings(**settings), text, seed).to_dict()
    return text, settings["steps"], seed, (r["accuracy"] if r["status"] == "ok" else 0.0), r["wall_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "configs" / "table.yaml"))
    p.add_argument("--sample", type=int, default=100)
    p.add_argument("--sample-seed", type=int, default=2026)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--full-steps", type=int, default=500)
    p.add_argument("--table", help="also correlate this table's means with the full-fidelity means")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", help="write every child's accuracy here")
    p.add_argument("--from-json", help="print the statistics of a measurement saved with --json; train nothing")
    args = p.parse_args()

    from scipy.stats import spearmanr

    from search.analysis.table_build import machine
    from search.loop.config import derive_seed, load_config

    config = load_config(args.config)
    cheap = dataclasses.asdict(config.child)
    full = dict(cheap, steps=args.full_steps)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        texts, seeds, results = saved["texts"], saved["seeds"], [tuple(r) for r in saved["results"]]
        cheap["steps"], full["steps"] = sorted({r[1] for r in results})
        print(f"# table fidelity: statistics of {args.from_json}: {len(texts)} functions x {len(seeds)} seeds x "
              f"steps {cheap['steps']} and {full['steps']}")
    else:
        texts = sample_functions(args.sample, args.sample_seed)
        seeds = [derive_seed(4_711, k) for k in range(args.seeds)]
        jobs = [(settings, t, s) for s in seeds for t in texts for settings in (cheap, full)]
        print(f"# table fidelity: {machine()}; {len(texts)} functions x {len(seeds)} seeds x steps "
              f"{cheap['steps']} and {full['steps']} ({len(jobs)} children, {args.workers} workers)")
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(train, jobs, chunksize=4)
        print(f"# {time.perf_counter() - start:.0f} s")
    acc = {(t, st, s): a for t, st, s, a, _ in results}
    wall = {st: statistics.fmean(w for _, st2, _, _, w in results if st2 == st) for st in (cheap["steps"],
                                                                                           full["steps"])}

    def means(steps: int, which=None) -> list[float]:
        use = seeds if which is None else [seeds[i] for i in which]
        return [statistics.fmean(acc[(t, steps, s)] for s in use) for t in texts]

    lo, hi = cheap["steps"], full["steps"]
    rho = spearmanr(means(lo), means(hi)).statistic
    print(f"spearman(mean of {len(seeds)} seeds at {lo} steps, at {hi} steps) = {rho:.3f}")
    if len(seeds) >= 2:
        a, b = range(0, len(seeds) // 2), range(len(seeds) // 2, len(seeds))
        for steps in (lo, hi):
            print(f"spearman within {steps} steps, seeds {list(a)} vs {list(b)} = "
                  f"{spearmanr(means(steps, a), means(steps, b)).statistic:.3f}")
    trained = [i for i, t in enumerate(texts) if all(acc[(t, st, s)] > 0 for st in (lo, hi) for s in seeds)]
    lo_all, hi_all = means(lo), means(hi)
    print(f"functions ok at every seed of both: {len(trained)}; the others scored 0 at both fidelities: "
          f"{sum(1 for i in range(len(texts)) if i not in trained and lo_all[i] == 0 and hi_all[i] == 0)} of "
          f"{len(texts) - len(trained)}")
    print(f"spearman over the {len(trained)} ok at both = "
          f"{spearmanr([lo_all[i] for i in trained], [hi_all[i] for i in trained]).statistic:.3f}")
    better = [i for i in trained if hi_all[i] >= statistics.median(hi_all[j] for j in trained)]
    print(f"spearman over their better half ({len(better)}, by the {hi}-step mean) = "
          f"{spearmanr([lo_all[i] for i in better], [hi_all[i] for i in better]).statistic:.3f}")
    k = max(1, len(texts) // 10)
    top_hi = set(sorted(texts, key=lambda t: -means(hi)[texts.index(t)])[:k])
    top_lo = set(sorted(texts, key=lambda t: -means(lo)[texts.index(t)])[:k])
    print(f"top {k} at {hi} steps found in the top {k} at {lo} steps: {len(top_hi & top_lo)}/{k}")
    print(f"mean seconds per child: {lo} steps {wall[lo]:.2f}, {hi} steps {wall[hi]:.2f}")
    if args.table:
        from evaluator.table_file import load_table

        table = load_table(args.table)
        rows = [table.find(t) for t in texts]
        pairs = [(r["mean"], m) for r, m in zip(rows, means(hi)) if r is not None]
        print(f"spearman(table {Path(args.table).name} means, {hi} steps) = "
              f"{spearmanr(*zip(*pairs)).statistic:.3f} over {len(pairs)} functions")
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps({"texts": texts, "seeds": seeds, "results": results}))


if __name__ == "__main__":
    main()
