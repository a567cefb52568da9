"""``actsearch top | plot | report``: look at a run (``search.analysis.ranking`` ranks its candidates).

Everything here reads the run store read-only (``Store.open(run, readonly=True)``), so it works while the search is
still writing.
"""
from __future__ import annotations

from search.analysis.formatting import FORMATS
from search.cli.common import PICTURE_SUFFIXES, open_run, output_file, whole
from search.language.errors import UserError

DEFAULT_K = 20


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


def cmd_top(args) -> int:
    from search.analysis.ranking import current_analysis, displayed, ranked, ranked_note, ranked_text, run_summary

    run_dir, config, store = open_run(args.run_dir)
    with store:
        rows = displayed(store, ranked(store, config, args.k))
        summary = run_summary(run_dir, config, store)
        analysis = current_analysis(store, config)
        later = store.analyses_after(analysis["id"]) if analysis else 0
    if args.format in ("table", "markdown"):
        print(summary)
        print(ranked_note(config, analysis, later))
        print()
        print(ranked_text(rows, args.format, config.rewards) if rows else "no trained candidate yet")
    else:
        print(ranked_text(rows, args.format, config.rewards))
    return 0


def cmd_plot(args) -> int:
    output = output_file(args.output, "-o", "functions.png", PICTURE_SUFFIXES)
    run_dir, config, store = open_run(args.run_dir)
    with store:
        from search.analysis.plots import plot_ranked, plot_run_progress
        from search.analysis.ranking import displayed

        if args.progress:
            plot_run_progress(store, output, config.rewards)
        else:
            rows = store.top(args.top)
            if not rows:
                raise UserError(f"{run_dir}: no trained candidate yet; nothing to plot (try --progress)")
            plot_ranked(displayed(store, rows), output, config.rewards)
    print(f"wrote {output}")
    return 0


def cmd_report(args) -> int:
    output = output_file(args.output, "-o", "report.html", (".html",))
    run_dir, config, store = open_run(args.run_dir)
    with store:
        from search.analysis.report import write_run_report

        write_run_report(output, run_dir, config, store, args.k, args.plot_top)
    print(f"wrote {output}")
    return 0
