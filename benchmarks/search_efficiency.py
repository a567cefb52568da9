"""How many trained children each proposer needs on real rewards: every proposer replays the shipped tabular benchmark.

Each proposer kind (default: every kind but exhaustive) runs ``--seeds`` searches with its default settings, driven by
``search.loop.local.search_table`` for ``max(--budgets)`` trained children: a child's reward is one recorded seed of
its function (chosen by the child's seed, as ``child.task: table`` does), screened functions get 0, repeats their
recorded reward, and a search that proposes 500 times in a row nothing new stops (as ``actsearch run`` does).

A search's quality after n children is the best *table mean* (the mean over the table's seeds, the closest thing to a
function's true accuracy) among the functions it trained so far; it picks by the noisy reward it saw, but is judged by
the mean. Printed per kind:

- the median and IQR over seeds of that best-so-far table mean after each budget;
- the children until the first top-1% function (by table mean) and until the first top-10 function: median over
  seeds (a seed that never finds one counts as more than the budget), the share of seeds that found one, and the
  ratio of medians to random search's;
- and where the paper's top 8 and the named baselines rank in each ``--tables`` file.

    .venv/bin/python benchmarks/search_efficiency.py --seeds 0-29 --plot docs/search_efficiency.png

Runs the searches in ``--workers`` processes (default: the cores).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_TABLE = REPO / "tables" / "mnist1d-150.json"
DEFAULT_FULL = REPO / "tables" / "mnist1d-500.json"
BUDGETS = (100, 300, 1000)


def parse_seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def one_search(job: tuple[str, int, str, int]) -> dict:
    """One replayed search: the table mean of each function it trained, in order."""
    import torch

    from controller import ControllerSettings, make_proposer
    from evaluator.table_file import load_table
    from search.loop.config import SpaceSettings
    from search.loop.local import search_table

    kind, seed, table_path, children = job
    torch.set_num_threads(1)
    table = load_table(table_path)
    space = SpaceSettings(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in table.header["space"].items()}).build()
    proposer = make_proposer(ControllerSettings(kind=kind), space, seed)
    start = time.perf_counter()
    run = search_table(proposer, space, table, children, seed=seed, failed_reward=table.header["failed_reward"])
    means = [table.by_fingerprint[fp]["mean"] if fp in table.by_fingerprint else 0.0 for _, fp, _ in run["children"]]
    return {"kind": kind, "seed": seed, "means": means, "proposals": len(run["rewards"]),
            "seconds": time.perf_counter() - start}


def quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def first_hit(means: list[float], threshold: float) -> float:
    """Children until the first function with table mean >= threshold (inf when none)."""
    return next((i + 1 for i, m in enumerate(means) if m >= threshold), math.inf)


def median_hits(hits: list[float]) -> float:
    return statistics.median(hits)  # inf counts as "more than the budget" and sorts last


def show_hits(value: float, budget: int) -> str:
    return f">{budget}" if math.isinf(value) else f"{value:g}"


def ranks(table_path: Path) -> list[tuple[str, str]]:
    from evaluator.table_file import load_table
    from search.analysis.table_build import PAPER_FUNCTIONS, SHOWN_BASELINES

    table = load_table(table_path)
    out = []
    for f in (*PAPER_FUNCTIONS, *SHOWN_BASELINES):
        row = table.find(f)
        if row is None:
            out.append((f, "not in table"))
        else:
            sd = f" ± {row['sd']:.4f}" if row["sd"] is not None else ""
            out.append((f, f"{table.rank_of(row)}/{len(table.rows)}  {row['mean']:.4f}{sd}"))
    return out


def machine_line() -> str:
    from search.analysis.table_build import machine

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"{machine()}; python {platform.python_version()}; commit {commit}"


def main() -> None:
    from controller import KINDS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default=str(DEFAULT_TABLE), help="the table replayed")
    p.add_argument("--tables", nargs="*", default=None, help="tables whose ranks of named functions are printed "
                                                              "(default: the replayed one and the full-fidelity one)")
    p.add_argument("--kinds", nargs="*", default=[k for k in KINDS if k != "exhaustive"])
    p.add_argument("--seeds", default="0-29")
    p.add_argument("--budgets", nargs="*", type=int, default=list(BUDGETS))
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--plot", help="PNG of the best-so-far curves")
    p.add_argument("--json", help="write every search's trajectory here")
    args = p.parse_args()

    from evaluator.table_file import load_table

    table = load_table(args.table)
    seeds = parse_seeds(args.seeds)
    budget = max(args.budgets)
    n = len(table.rows)
    top1 = max(1, math.ceil(0.01 * n))
    top1_threshold = table.rows[top1 - 1]["mean"]
    top10_threshold = table.rows[9]["mean"]
    print(f"# search efficiency: {machine_line()}")
    print(f"# table {args.table}: {n} functions x {table.seeds} seeds; top 1% = the {top1} best (table mean >= "
          f"{top1_threshold:.4f}); top 10: mean >= {top10_threshold:.4f}; best {table.rows[0]['mean']:.4f}")
    print(f"# {len(seeds)} seeds ({args.seeds}) per kind, up to {budget} children each")
    jobs = [(kind, seed, args.table, budget) for kind in args.kinds for seed in seeds]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(one_search, jobs, chunksize=1)
    print(f"# {len(jobs)} searches in {time.perf_counter() - start:.0f} s")
    by_kind = {kind: [r for r in results if r["kind"] == kind] for kind in args.kinds}

    def best_at(r: dict, b: int) -> float:
        return max(r["means"][:b], default=0.0)

    hits = {kind: ([first_hit(r["means"], top1_threshold) for r in rs],
                   [first_hit(r["means"], top10_threshold) for r in rs]) for kind, rs in by_kind.items()}
    base = hits.get("random")
    header = ["kind"] + [f"best mean @{b}: median [IQR]" for b in args.budgets] + \
             ["children to top-1%", "found", "vs random", "children to top-10", "found", "vs random",
              "proposals", "s/search"]
    rows = []
    for kind, rs in by_kind.items():
        cells = [kind]
        for b in args.budgets:
            q1, med, q3 = quantiles([best_at(r, b) for r in rs])
            cells.append(f"{med:.4f} [{q1:.4f}, {q3:.4f}]")
        for which in (0, 1):
            h = hits[kind][which]
            med = median_hits(h)
            found = sum(1 for v in h if v <= budget)
            ratio = "-"
            if base is not None:
                ref = median_hits(base[which])
                ratio = f"{med / ref:.2f}" if math.isfinite(med) and math.isfinite(ref) else "-"
            cells += [show_hits(med, budget), f"{found}/{len(h)}", ratio]
        cells += [f"{statistics.median(r['proposals'] for r in rs):.0f}",
                  f"{statistics.fmean(r['seconds'] for r in rs):.1f}"]
        rows.append(cells)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")

    tables = args.tables if args.tables is not None else [p for p in (args.table, str(DEFAULT_FULL))
                                                            if Path(p).is_file()]
    for path in dict.fromkeys(tables):
        print(f"\n# ranks in {path} (rank/functions  mean ± sd over seeds)")
        for f, where in ranks(Path(path)):
            print(f"{f:28s} {where}")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = list(range(1, budget + 1))
        for kind, rs in by_kind.items():
            curves = [[best_at(r, x) for x in xs] for r in rs]
            per_x = list(zip(*curves))
            med = [statistics.median(v) for v in per_x]
            lo = [quantiles(list(v))[0] for v in per_x]
            hi = [quantiles(list(v))[2] for v in per_x]
            line, = ax.plot(xs, med, label=kind)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
        ax.axhline(top1_threshold, color="grey", linestyle=":", label=f"top 1% ({top1} functions)")
        ax.set_xscale("log")
        ax.set_xlabel("children trained")
        ax.set_ylabel("best table mean so far")
        ax.set_ylim(max(0.0, top1_threshold - 0.08), table.rows[0]["mean"] + 0.005)
        ax.set_title(f"{Path(args.table).name}: median and IQR over {len(seeds)} seeds")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"\n# wrote {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
