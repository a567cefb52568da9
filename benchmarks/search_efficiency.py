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

With ``--fidelity`` (one or more settings, e.g. ``off 17,50:3``: rungs and eta, or ``off``), each kind runs once per
setting, early stopping replayed on the table's recorded learning curves, and the search is judged in **child steps**
(compute) too: a child stopped at a rung costs the steps it trained. A function counts as found only by a child that
went the whole way (a stopped child is one the search discarded), and the ratio column compares each kind's median
steps to the top-1% with early stopping to its own without.

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


def parse_fidelity(text: str) -> dict:
    """``off`` -> {} (every child trains in full); ``17,50:3`` -> rungs [17, 50], eta 3."""
    if text == "off":
        return {}
    rungs, _, eta = text.partition(":")
    return {"rungs": [int(r) for r in rungs.split(",")], "eta": float(eta or 3)}


def fidelity_label(text: str) -> str:
    f = parse_fidelity(text)
    return "off" if not f else f"rungs {','.join(map(str, f['rungs']))} eta {f['eta']:g}"


def one_search(job: tuple[str, int, str, int, str]) -> dict:
    """One replayed search: the table mean of each function it trained, in order, and each child's steps."""
    import torch

    from controller import ControllerSettings, make_proposer
    from evaluator.table_file import load_table
    from search.loop.config import SpaceSettings
    from search.loop.local import search_table

    kind, seed, table_path, children, fidelity = job
    torch.set_num_threads(1)
    table = load_table(table_path)
    space = SpaceSettings(**{k: tuple(v) if isinstance(v, list) else v
                             for k, v in table.header["space"].items()}).build()
    proposer = make_proposer(ControllerSettings(kind=kind), space, seed)
    start = time.perf_counter()
    run = search_table(proposer, space, table, children, seed=seed, failed_reward=table.header["failed_reward"],
                       fidelity=parse_fidelity(fidelity))
    means = [table.by_fingerprint[fp]["mean"] if fp in table.by_fingerprint else 0.0 for _, fp, _ in run["children"]]
    return {"kind": kind, "fidelity": fidelity, "seed": seed, "means": means, "steps": run["steps"],
            "stopped": run["stopped"], "proposals": len(run["rewards"]), "seconds": time.perf_counter() - start}


def quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def first_hit(run: dict, threshold: float, steps: bool = False) -> float:
    """Children (or, with ``steps``, child steps) until the first child that trained a function with table mean >=
    threshold the whole way (inf when none)."""
    spent = 0
    for i, (mean, cost, stopped) in enumerate(zip(run["means"], run["steps"], run["stopped"])):
        spent += cost
        if mean >= threshold and not stopped:
            return spent if steps else i + 1
    return math.inf


def split_steps(run: dict, threshold: float, first: int) -> tuple[int, int, int] | None:
    """``first_hit``'s child steps split into those spent on the first ``first`` children and on the children after:
    ``(first part, rest, all)``; None when none was found."""
    children = first_hit(run, threshold)
    if math.isinf(children):
        return None
    spent = run["steps"][:int(children)]
    head = sum(spent[:first])
    return head, sum(spent) - head, sum(spent)


def best_at(run: dict, budget: int) -> float:
    """The best table mean among the functions trained the whole way by the first ``budget`` children."""
    return max((m for m, stopped in zip(run["means"][:budget], run["stopped"][:budget]) if not stopped), default=0.0)


def median_hits(hits: list[float]) -> float:
    return statistics.median(hits)  # inf counts as "more than the budget" and sorts last


def show_hits(value: float, budget: int) -> str:
    return f">{budget}" if math.isinf(value) else f"{value:g}"


def show_steps(value: float) -> str:
    return "-" if math.isinf(value) else f"{value / 1000:.1f}k"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if math.isfinite(a) and math.isfinite(b) and b else "-"


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
    p.add_argument("--fidelity", nargs="*", default=["off"],
                   help="early stopping settings to compare: 'off' or RUNGS:ETA, e.g. off 17,50:3 (rungs the table "
                        "recorded)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--plot", help="PNG of the best-so-far curves")
    p.add_argument("--json", help="write every search's trajectory here")
    p.add_argument("--learning", action="store_true",
                   help="also print, per kind and setting, the mean table mean of the functions proposed in windows "
                        "of children (1-100, 101-300, 301-1000): whether stopped children's lower rewards mislead "
                        "what a proposer learns")
    p.add_argument("--split", type=int, default=0,
                   help="also print, per kind and setting, the median child steps to the top-1%% spent on the first "
                        "SPLIT children and on those after (the surrogate's first 16 are random: what its model "
                        "could not choose)")
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
    for f in args.fidelity:
        missing = [r for r in parse_fidelity(f).get("rungs", []) if r not in (table.header.get("rungs") or [])]
        if missing:
            p.error(f"--fidelity {f}: the table recorded scores at steps {table.header.get('rungs')}, not {missing}")
    steps = table.header.get("child", {}).get("steps")
    print(f"# child steps: {steps} per child trained in full; early stopping: "
          f"{', '.join(fidelity_label(f) for f in args.fidelity)}")
    jobs = [(kind, seed, args.table, budget, f) for kind in args.kinds for f in args.fidelity for seed in seeds]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(one_search, jobs, chunksize=1)
    print(f"# {len(jobs)} searches in {time.perf_counter() - start:.0f} s")
    groups = {(kind, f): [r for r in results if r["kind"] == kind and r["fidelity"] == f]
              for kind in args.kinds for f in args.fidelity}
    hits = {g: ([first_hit(r, top1_threshold) for r in rs], [first_hit(r, top10_threshold) for r in rs],
                [first_hit(r, top1_threshold, steps=True) for r in rs]) for g, rs in groups.items()}
    header = ["kind", "early stopping"] + [f"best mean @{b}: median [IQR]" for b in args.budgets] + \
             ["children to top-1%", "found", "vs random", "children to top-10", "found", "vs random",
              "child steps to top-1%", "vs random", "vs no early stopping", "stopped", "proposals", "s/search"]
    rows = []
    for (kind, f), rs in groups.items():
        cells = [kind, fidelity_label(f)]
        for b in args.budgets:
            q1, med, q3 = quantiles([best_at(r, b) for r in rs])
            cells.append(f"{med:.4f} [{q1:.4f}, {q3:.4f}]")
        base = hits.get(("random", f))
        for which in (0, 1):
            h = hits[(kind, f)][which]
            med = median_hits(h)
            found = sum(1 for v in h if v <= budget)
            cells += [show_hits(med, budget), f"{found}/{len(h)}",
                      ratio(med, median_hits(base[which])) if base is not None else "-"]
        med_steps = median_hits(hits[(kind, f)][2])
        off = hits.get((kind, "off"))
        cells += [show_steps(med_steps), ratio(med_steps, median_hits(base[2])) if base is not None else "-",
                  ratio(med_steps, median_hits(off[2])) if off is not None and f != "off" else "-",
                  f"{statistics.fmean(sum(r['stopped']) / max(1, len(r['stopped'])) for r in rs):.0%}",
                  f"{statistics.median(r['proposals'] for r in rs):.0f}",
                  f"{statistics.fmean(r['seconds'] for r in rs):.1f}"]
        rows.append(cells)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")

    if args.learning:
        windows = [(lo, hi) for lo, hi in ((1, 100), (101, 300), (301, 1000)) if lo <= budget]
        print("\n# what each proposer proposes: the mean table mean of the functions it trained (in full or stopped) "
              "in each window of children, median [IQR] over seeds; random search's cannot change")
        print("| kind | early stopping | " + " | ".join(f"children {lo}-{min(hi, budget)}" for lo, hi in windows) + " |")
        print("|---|---|" + "---|" * len(windows))
        for (kind, f), rs in groups.items():
            cells = []
            for lo, hi in windows:
                means = [statistics.fmean(r["means"][lo - 1:hi]) for r in rs if len(r["means"]) >= lo]
                q1, med, q3 = quantiles(means) if means else (math.nan,) * 3
                cells.append(f"{med:.4f} [{q1:.4f}, {q3:.4f}]" if means else "-")
            print(f"| {kind} | {fidelity_label(f)} | " + " | ".join(cells) + " |")

    if args.split:
        print(f"\n# median child steps to the top-1% spent on children 1-{args.split} and after (searches that "
              f"found one)")
        print("| kind | early stopping | children 1-" + str(args.split) + " | after | in all |")
        print("|---|---|---:|---:|---:|")
        for (kind, f), rs in groups.items():
            parts = [split_steps(r, top1_threshold, args.split) for r in rs]
            parts = [p for p in parts if p is not None]
            if parts:
                print(f"| {kind} | {fidelity_label(f)} | " + " | ".join(
                    show_steps(statistics.median(p[i] for p in parts)) for i in range(3)) + " |")

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
        for (kind, f), rs in groups.items():
            curves = [[best_at(r, x) for x in xs] for r in rs]
            per_x = list(zip(*curves))
            med = [statistics.median(v) for v in per_x]
            lo = [quantiles(list(v))[0] for v in per_x]
            hi = [quantiles(list(v))[2] for v in per_x]
            line, = ax.plot(xs, med, label=kind if len(args.fidelity) == 1 else f"{kind}, {fidelity_label(f)}")
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
