"""``actsearch top | plot | report | significance | export``: look at a run, test its candidates, take one away.

Everything here reads the run store read-only (``Store.open(run, readonly=True)``), so it works while the search is
still writing, except ``significance``, which drives re-trainings and holds the run's lock like a search does.
"""
from __future__ import annotations

import collections
import io
import json
import math
import re
import sys
from pathlib import Path

from evaluator.activations import DEFAULT_BASELINES
from search.analysis.tables import FORMATS, candidate_columns, format_rows
from search.cli import whole
from search.language.errors import UserError

DEFAULT_K = 20


# ---------------------------------------------------------------- the commands

def register(sub) -> None:
    p = sub.add_parser("top", help="the best candidates of a run (also while it runs)",
                       description="The run's trained candidates ranked by the search's reward, with their mean and "
                                   "spread over every evaluation (the search's child plus significance re-trainings "
                                   "under the run's child settings, its split included), the statuses of those "
                                   "evaluations and the significance verdicts when present. Reads the store "
                                   "read-only: safe while the run goes.")
    p.add_argument("run_dir", metavar="RUN", help="the run's directory, e.g. results/quickstart")
    p.add_argument("-k", type=whole(1, 100_000), default=DEFAULT_K, help=f"rows (default {DEFAULT_K})")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default), markdown, csv or json")
    p.set_defaults(func=cmd_top)

    p = sub.add_parser("plot", help="plot the top functions (or, with --progress, the search's course) to a PNG",
                       description="The top functions and their derivatives on [-5, 5], one panel each, every beta "
                                   "at 1; with --progress: reward per candidate, best so far, moving average, and "
                                   "the controller's entropy per update.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png", help="where to write the PNG")
    p.add_argument("--top", type=whole(1, 64), default=8, metavar="K", help="functions to plot (default 8)")
    p.add_argument("--progress", action="store_true", help="plot the search's course instead")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="one self-contained HTML page about a run",
                       description="Config, progress, top table, function plots and significance results (when "
                                   "present) in one HTML file with the images embedded.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("-o", "--output", required=True, metavar="FILE.html")
    p.add_argument("-k", type=whole(1, 100_000), default=DEFAULT_K, help=f"rows of the top table (default {DEFAULT_K})")
    p.add_argument("--plot-top", type=whole(1, 64), default=8, metavar="K", help="functions to plot (default 8)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("significance", help="re-train top candidates and baselines over paired seeds and compare",
                       description="Re-trains each chosen candidate and each baseline with seed numbers 0..n-1 on "
                                   "the Ray workers (seed s is the same child seed for all of them: same init, same "
                                   "data order), scored on the test split (data the search never scored; it "
                                   "selected its candidates on child.split), then compares every candidate with "
                                   "every baseline: mean difference with a 95% bootstrap CI, the exact Wilcoxon "
                                   "signed-rank test, the paper's one-sided sign test, Holm-corrected over all "
                                   "comparisons, and a verdict. Results are stored in the run as they arrive; "
                                   "running the same command again continues a stopped test.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--top", type=whole(1, 1000), default=None, metavar="K",
                   help="test the K best trained candidates (default 5, or none when --candidates is given)")
    p.add_argument("--candidates", default="", metavar="EXPR[,EXPR]",
                   help="also test these expressions (commas inside calls do not split)")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES), metavar="NAME[,NAME]",
                   help=f"baseline names (relu, swish, gelu, silu, elu, ...) or expressions (default "
                        f"{','.join(DEFAULT_BASELINES)})")
    p.add_argument("--seeds", type=whole(1, 1000), default=10, help="seeds per function (default 10)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="change a child.* or resources.* setting for the re-trainings, e.g. --set child.model=resnet56 "
                        "(a different child is a separate study)")
    p.add_argument("--split", choices=("val", "test"), default=None,
                   help="held-out set the scores come from (default test: data the search never scored; val is the "
                        "set the search selected on, so its verdicts favour the candidates). No effect on the "
                        "synthetic task")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw the comparisons to this PNG: per-seed differences, bootstrap interval, verdict")
    p.add_argument("--format", choices=FORMATS, default="table", help="format of the result tables")
    p.set_defaults(func=cmd_significance)

    p = sub.add_parser("export", help="write a candidate as a standalone torch module file",
                       description="A Python file needing only torch: an nn.Module with per-channel betas, the "
                                   "formula and the provenance (run, rank, reward, significance) in its docstring.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("candidate", metavar="RANK|EXPRESSION", help="a rank of `actsearch top`, or an expression text")
    p.add_argument("-o", "--output", required=True, metavar="FILE.py")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--class-name", default="SearchedActivation", help="the module's class name")
    p.set_defaults(func=cmd_export)


# ---------------------------------------------------------------- reading a run

def _open(run_dir: str):
    """``(run_dir, config, store)`` of an existing run, the store read-only. Raises ``UserError``."""
    from search.loop.rundir import require_run_dir, run_config
    from search.loop.store import Store

    path = require_run_dir(run_dir)
    store = Store.open(path, readonly=True)
    try:
        return path, run_config(path, store), store
    except BaseException:
        store.close()
        raise


def current_analysis(store, config) -> dict | None:
    """The significance analysis to show: that of the default study (the run's child settings on the test split,
    see ``search.analysis.significance.default_study_key``) if there is one, else that of the run's own child settings
    (scored on the split the search selected on), else the newest."""
    from search.analysis.significance import default_study_key, study_key

    analyses = store.significance()
    if not analyses:
        return None
    for key in (default_study_key(config), study_key(config)):
        home = [a for a in analyses if a["study"] == key]
        if home:
            return home[-1]
    return max(analyses, key=lambda a: a["at"])


def _verdicts(comparisons: list[dict]) -> str:
    """``"better than relu, x; no evidence vs swish"``: a candidate's verdicts, grouped."""
    groups: dict[str, list[str]] = {}
    for c in comparisons:
        groups.setdefault(c["verdict"], []).append(c["baseline"])
    words = {"better": "better than", "worse": "worse than", "no evidence": "no evidence vs"}
    return "; ".join(f"{words.get(v, v)} {', '.join(bs)}" for v, bs in groups.items())


def ranked(store, config, k: int) -> list[dict]:
    """The ``k`` best trained candidates (``Store.top``) with ``mean``, ``sd`` and ``evaluations`` over the search's
    child and the re-trainings under the run's child settings, split included (test-split re-trainings score other
    data and are not pooled with the search's reward), ``statuses`` (status -> count over those), and
    ``significance``: the candidate's comparisons in the current analysis (see ``current_analysis``)."""
    from search.analysis.significance import study_key

    rows = store.top(k)
    retrained = collections.defaultdict(list)
    for r in store.retrainings(study_key(config), [row["text"] for row in rows]):
        retrained[r["activation"]].append(r)
    analysis = current_analysis(store, config)
    comparisons = collections.defaultdict(list)
    for c in analysis["comparisons"] if analysis else []:
        comparisons[c["candidate"]].append(c)
    for row in rows:
        again = retrained[row["text"]]
        scores = [row["reward"]] + [r["score"] for r in again]
        mean = sum(scores) / len(scores)
        row["mean"] = mean
        row["sd"] = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)) if len(scores) > 1 else None
        row["evaluations"] = len(scores)
        row["statuses"] = dict(collections.Counter([row["status"]] + [r["status"] for r in again]))
        row["significance"] = comparisons.get(row["text"], [])
    return rows


def displayed(store, rows: list[dict]) -> list[dict]:
    """``rows`` of ``store`` with ``simplest``, ``equals`` and ``display`` (``search.analysis.tables.with_display``),
    the run's other texts of each function (its duplicates) counting as known equivalents."""
    from search.analysis.tables import with_display

    return with_display(rows, store.texts_by_fingerprint(r["fingerprint"] for r in rows))


def _shows(rows: list[dict]):
    """``show(text)``: the display of a candidate's text, the rows' own (``displayed``) first."""
    from search.analysis.tables import display_text

    known = {r["text"]: r["display"] for r in rows}
    return lambda text: known.get(text) or display_text(text)


def _counts_text(counts: dict[str, int], keys) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in keys if counts.get(s))


def run_summary(run_dir: Path, config, store) -> str:
    """One line: children trained / budget and their statuses, proposals, in flight, controller updates."""
    from search.loop.store import CHILD_STATUSES, FREE_STATUSES, OPEN_STATUSES

    counts = store.counts()
    children = _counts_text(counts, CHILD_STATUSES)
    free = _counts_text(counts, FREE_STATUSES)
    running = sum(counts[s] for s in OPEN_STATUSES)
    return (f"{run_dir}: {store.evaluated()}/{config.budget.children} children" + (f" ({children})" if children else "")
            + f", {store.proposals()} proposals" + (f" ({free})" if free else "")
            + f", {running} open, {store.update_count()} controller updates")


def _statuses_text(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in statuses.items())


# `actsearch top`: the search's reward beside the re-trainings' mean, sd and verdicts.
TOP_COLUMNS = candidate_columns("rank", "reward", "mean", "sd", "evaluations", "statuses", "text", "proposed", "index",
                                "verdicts")


def top_text(rows: list[dict], fmt: str, rewards=None) -> str:
    """``ranked`` rows as ``fmt``: table, markdown and csv through ``search.analysis.tables.format_rows``; json with every
    field (statuses as a mapping, significance as the comparison records). rewards: the run's ``RewardSettings``;
    with a named or minimised metric, reward and mean are shown as that metric (best first either way). Table and
    markdown show each function as its simplest text (``displayed`` rows; plain rows get it without the run's
    duplicates); csv and json keep the canonical ``text`` and add ``simplest`` and ``equals``."""
    from search.analysis.significance import metric_comparisons
    from search.analysis.tables import metric_rows, score_columns, shown_columns, shows_metric, with_display

    rows = metric_rows(rows if all("display" in r for r in rows) else with_display(rows), rewards)
    if fmt == "json":
        keep = ("rank", "text", "simplest", "equals", "reward", "mean", "sd", "evaluations", "statuses", "proposed",
                "index", "fingerprint", "status", "seed", "significance") + (("metric", "lower_is_better")
                                                                             if shows_metric(rewards) else ())
        return json.dumps([{key: (metric_comparisons(row.get(key), rewards) if key == "significance" else row.get(key))
                            for key in keep} for row in rows], indent=2, default=str)
    shown = []
    for row in rows:
        multiple = row["evaluations"] > 1
        shown.append({**row, "mean": row["mean"] if multiple else None, "statuses": _statuses_text(row["statuses"]),
                      "verdicts": _verdicts(row["significance"]) or "-"})
    return format_rows(shown, shown_columns(score_columns(TOP_COLUMNS, rewards), fmt), fmt)


def cmd_top(args) -> int:
    if args.k < 1:
        raise UserError(f"-k: must be >= 1, got {args.k}")
    run_dir, config, store = _open(args.run_dir)
    with store:
        rows = displayed(store, ranked(store, config, args.k))
        summary = run_summary(run_dir, config, store)
        analysis = current_analysis(store, config)
    if args.format in ("table", "markdown"):
        print(summary)
        note = "ranked by the search's reward; mean and sd over the search's child and significance re-trainings " \
               "under the run's child settings (its split included)"
        if config.rewards.minimize:
            note = (f"ranked by {config.rewards.metric}, lowest (best) first; mean and sd over the search's child and "
                    f"significance re-trainings under the run's child settings (its split included)")
        if analysis:
            from search.analysis.significance import study_label

            note += (f"; significance: {analysis['seeds']} seeds, {study_label(analysis, config.to_dict()['child'])}")
        print(note)
        print()
        print(top_text(rows, args.format, config.rewards) if rows else "no trained candidate yet")
    else:
        print(top_text(rows, args.format, config.rewards))
    return 0


def _picture(path: str, what: str) -> Path:
    """A writable path for a plot, whose suffix names a format matplotlib writes (png, pdf, svg)."""
    out = _writable(path, what)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"{out}: a plot is written as .png, .pdf or .svg; give one of those suffixes")
    return out


def _writable(path: str, what: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name such as {what}")
    if not out.parent.is_dir():
        raise UserError(f"{out}: no such directory {out.parent}")
    return out


def _function_plot(rows: list[dict], dest, rewards=None) -> None:
    """The functions of ``displayed`` rows, each titled ``#rank (reward) simplest text``."""
    from search.analysis.plots import plot_functions
    from search.analysis.tables import metric_rows, shows_metric

    name = f"{rewards.metric} " if shows_metric(rewards) else ""
    plot_functions([r["text"] for r in rows], dest,
                   titles=[f"#{r['rank']} ({name}{'-' if r['reward'] is None else format(r['reward'], '.4f')}) "
                           f"{r['display']}" for r in metric_rows(rows, rewards, ("reward",))])


def _significance_plot(comparisons: list, subtitle: str, dest, rewards=None, show=None) -> None:
    """The comparisons' picture, each candidate named as ``show`` (default ``display_text``) shows it."""
    from search.analysis.plots import plot_significance
    from search.analysis.significance import metric_comparisons
    from search.analysis.tables import display_text

    show = show or display_text
    plot_significance([dict(c, candidate=show(c["candidate"])) for c in metric_comparisons(comparisons, rewards)],
                      dest, subtitle=subtitle)


def _progress_plot(store, dest) -> None:
    from search.analysis.plots import plot_progress

    plot_progress([c["reward"] for c in store.candidates()], store.updates(), dest)


def cmd_plot(args) -> int:
    if args.top < 1:
        raise UserError(f"--top: must be >= 1, got {args.top}")
    output = _picture(args.output, "functions.png")
    run_dir, config, store = _open(args.run_dir)
    with store:
        if args.progress:
            _progress_plot(store, output)
        else:
            rows = store.top(args.top)
            if not rows:
                raise UserError(f"{run_dir}: no trained candidate yet; nothing to plot (try --progress)")
            _function_plot(displayed(store, rows), output, config.rewards)
    print(f"wrote {output}")
    return 0


def cmd_report(args) -> int:
    from search.analysis.report import build_report
    from search.analysis.significance import metric_comparisons, study_label
    from search.analysis.tables import metric_rows, shows_metric

    if args.k < 1 or args.plot_top < 1:
        raise UserError(f"-k and --plot-top: must be >= 1, got {args.k} and {args.plot_top}")
    output = _writable(args.output, "report.html")
    run_dir, config, store = _open(args.run_dir)
    with store:
        rows = displayed(store, ranked(store, config, args.k))
        if not rows:
            raise UserError(f"{run_dir}: no trained candidate yet; nothing to report")
        show = _shows(rows)
        analysis = current_analysis(store, config)
        functions, progress = io.BytesIO(), io.BytesIO()
        _function_plot(rows[:args.plot_top], functions, config.rewards)
        _progress_plot(store, progress)
        counts = store.counts()
        best = rows[0]
        summary = {"run": run_dir.name, "children": f"{store.evaluated()} / {config.budget.children}",
                   "proposals": store.proposals(), "statuses": _statuses_text({s: n for s, n in counts.items() if n}),
                   "controller updates": store.update_count(), "best reward": best["reward"],
                   "best candidate": best["display"]}
        if shows_metric(config.rewards):
            del summary["best reward"]
            summary[f"best {config.rewards.metric}"] = config.rewards.metric_of(best["reward"])
            summary["reward"] = (f"{config.rewards.metric}, "
                                 f"{'lower' if config.rewards.minimize else 'higher'} is better")
        significance_png = None
        if analysis:
            summary["significance"] = (f"{len(analysis['candidates'])} candidates x {len(analysis['baselines'])} "
                                       f"baselines, {analysis['seeds']} seeds, "
                                       f"{study_label(analysis, config.to_dict()['child'])}")
            buffer = io.BytesIO()
            _significance_plot(analysis["comparisons"], f"{analysis['seeds']} seeds, "
                               f"{study_label(analysis, config.to_dict()['child'])}", buffer, config.rewards, show)
            significance_png = buffer.getvalue()
    score = config.rewards.metric if shows_metric(config.rewards) else "reward"
    table = [{"rank": r["rank"], "expression": r["text"], score: r["reward"],
              "mean": r["mean"] if r["evaluations"] > 1 else None, "sd": r["sd"], "evaluations": r["evaluations"],
              "statuses": _statuses_text(r["statuses"]), "proposed": r["proposed"], "candidate": r["index"],
              "significance": _verdicts(r["significance"]) or None} for r in metric_rows(rows, config.rewards)]
    build_report(output, title=f"actsearch run {run_dir.name}", config=config.to_dict(), summary=summary,
                 top_rows=table, function_png=functions.getvalue(), progress_png=progress.getvalue(),
                 significance=metric_comparisons(analysis["comparisons"], config.rewards) if analysis else None,
                 wins_table=analysis["wins"] if analysis else None, significance_png=significance_png, show=show)
    print(f"wrote {output}")
    return 0


def cmd_significance(args) -> int:
    from search.analysis.significance import (
        baseline_labels,
        choose_candidates,
        comparisons_count,
        has_split,
        metric_note,
        run_significance,
        selection_warning,
        significance_table,
        statistics_text,
        study_config,
        study_overrides,
        too_few_seeds,
        wins_text,
    )
    from search.cli.child import split_activations

    run_dir, run_config, store = _open(args.run_dir)
    with store:
        if args.top is not None and args.top < 1:
            raise UserError(f"--top: must be >= 1, got {args.top}")
        if args.seeds < 1:
            raise UserError(f"--seeds: must be >= 1, got {args.seeds}")
        plot = _picture(args.plot, "significance.png") if args.plot else None  # before hours of training
        overrides = study_overrides(run_dir, args.overrides, args.split)  # the split made explicit (default test)
        config = study_config(run_dir, overrides)
        try:
            names = split_activations(args.baselines)
            expressions = split_activations(args.candidates) if args.candidates.strip() else []
        except UserError:
            raise UserError("--baselines / --candidates: an empty entry in a comma-separated list") from None
        baselines = baseline_labels(names, config)
        top = args.top if args.top is not None else (0 if expressions else 5)
        candidates = choose_candidates(store, top, expressions)
    if not comparisons_count(candidates, baselines):
        raise UserError("nothing to compare: every candidate is also a baseline")
    run_child, study_child = run_config.to_dict()["child"], config.to_dict()["child"]
    for warning in (too_few_seeds(candidates, baselines, args.seeds), selection_warning(run_child, study_child)):
        if warning:
            print(warning, file=sys.stderr)
    if args.split and not has_split(config):
        print(f"note: --split {args.split} has no effect: the synthetic task has no held-out data", file=sys.stderr)
    result = run_significance(run_dir, candidates, baselines, args.seeds, overrides)
    print(f"\n{result.total} re-trainings: {result.reused} from earlier sessions, {result.trained} trained now")
    if result.outcome != "complete":
        print("stopped; run the same command again to continue (finished re-trainings are kept)", file=sys.stderr)
        return 130
    where = f"on the {result.split} split" if result.split else "on the synthetic task (no held-out split)"
    print(f"\n{len(result.comparisons)} comparisons over {args.seeds} seeds {where} (candidate minus baseline; Holm "
          f"over all of them; verdict at 0.05):\n")
    print(significance_table(result.comparisons, args.format, config.rewards))
    print(f"\nwins / ties / losses over {args.seeds} seeds:\n")
    print(wins_text(result.wins, args.format))
    print()
    print(statistics_text(result.comparisons, args.seeds, result.split, run_child.get("split")))
    if metric_note(config.rewards):
        print(metric_note(config.rewards))
    if plot:
        from search.analysis.significance import study_label

        _significance_plot(result.comparisons, f"{args.seeds} seeds, {study_label({'child': study_child}, run_child)}",
                           plot, config.rewards)
        print(f"\nwrote {plot}")
    return 0


def cmd_export(args) -> int:
    from search.analysis.export import write_export
    from search.language.expression import Expression

    run_dir, config, store = _open(args.run_dir)
    with store:
        target = args.candidate.strip()
        if re.fullmatch(r"[-+]?\d+", target, re.ASCII):  # a rank (ASCII digits only: '²' is no rank)
            trained = store.evaluated()
            if len(target) > 12 or not 1 <= int(target) <= trained:
                raise UserError(f"rank {target[:20]}: out of range; {run_dir} has {trained} trained candidate(s) "
                                f"(see `actsearch top {run_dir}`)")
            rank = int(target)
            row = ranked(store, config, rank)[rank - 1]
            expr = Expression.parse(row["text"])
        else:
            expr = Expression.parse(target)
            fingerprint = expr.fingerprint()
            row = next((r for r in ranked(store, config, max(store.evaluated(), 1))
                        if r["fingerprint"] == fingerprint), None)
        analysis = current_analysis(store, config)
    provenance: dict = {"run": str(run_dir)}
    if row is None:
        provenance["note"] = "not trained by this run"
    else:
        provenance.update(rank=row["rank"], candidate=row["index"], reward=row["reward"])
        if config.rewards.minimize or config.rewards.metric != "accuracy":
            provenance.update({config.rewards.metric: config.rewards.metric_of(row["reward"]),
                               "reward is": f"-{config.rewards.metric}" if config.rewards.minimize
                               else config.rewards.metric})
        if row["evaluations"] > 1:
            provenance.update(evaluations=row["evaluations"], mean=row["mean"], sd=row["sd"])
    tested = {expr.text} | ({row["text"]} if row else set())  # any text of the function: displays show the simplest
    comparisons = [c for c in (analysis["comparisons"] if analysis else []) if c["candidate"] in tested]
    if comparisons:
        from search.analysis.significance import study_label

        provenance["significance"] = comparisons
        provenance["significance settings"] = (f"{analysis['seeds']} seeds, Holm over "
                                               f"{len(analysis['comparisons'])} comparisons, "
                                               f"{study_label(analysis, config.to_dict()['child'])}")
    path = write_export(args.output, expr, provenance, force=args.force, class_name=args.class_name)
    print(f"wrote {path}: {expr.text}")
    return 0
