"""``actsearch significance``: re-train a run's top candidates and baselines over paired seeds and compare them
(``search.analysis.significance``). It drives re-trainings and holds the run's lock like a search does."""
from __future__ import annotations

import json
import sys

from evaluator.activations import DEFAULT_BASELINES
from search.analysis.formatting import FORMATS
from search.cli.common import PICTURE_SUFFIXES, open_run, output_file, whole
from search.language.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("significance", help="re-train top candidates and baselines over paired seeds and compare",
                       description="Re-trains each chosen candidate and each baseline with seed numbers 0..n-1 on "
                                   "the Ray workers (seed s is the same child seed for all of them: same init, same "
                                   "data order), scored on the test split (data the search never scored; it "
                                   "selected its candidates on child.split), then compares every candidate with "
                                   "every baseline: mean difference with a 95% t interval, the exact Wilcoxon "
                                   "signed-rank test, the paper's one-sided sign test, Holm-corrected over all "
                                   "comparisons, and a verdict. Results are stored in the run as they arrive; "
                                   "running the same command again continues a stopped test.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--top", type=whole(1, 1000), default=None, metavar="K",
                   help="test the K best trained candidates (default 5, or none when --candidates is given)")
    p.add_argument("--candidates", default=None, metavar="EXPR[,EXPR]",
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
                        "synthetic and table tasks")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw the comparisons to this PNG: per-seed differences, t interval, verdict")
    p.add_argument("--format", choices=FORMATS, default="table", help="format of the result tables")
    p.add_argument("--accept-changed-child", dest="accept_changed", action="store_true",
                   help="go on although the table file or the user child's source file changed since the study's "
                        "first re-trainings (recorded in run.log); without it such a test is refused")
    p.set_defaults(func=cmd_significance)


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

    plot = output_file(args.plot, "--plot", "significance.png", PICTURE_SUFFIXES) if args.plot else None
    run_dir, run_config, store = open_run(args.run_dir)
    with store:
        overrides = study_overrides(run_dir, args.overrides, args.split)  # the split made explicit (default test)
        config = study_config(run_dir, overrides)
        try:
            names = split_activations(args.baselines)
            expressions = split_activations(args.candidates) if args.candidates is not None else []
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
        print(f"note: --split {args.split} has no effect: the {config.child.task} task has no held-out split to choose",
              file=sys.stderr)
    # csv and json: stdout holds the data alone (one CSV table, one JSON document); progress and prose go to stderr
    data = args.format in ("csv", "json")
    say = sys.stderr if data else sys.stdout
    result = run_significance(run_dir, candidates, baselines, args.seeds, overrides, out=say,
                              accept_changed=args.accept_changed)
    print(f"\n{result.total} re-trainings: {result.reused} from earlier sessions, {result.trained} trained now",
          file=say)
    if result.outcome != "complete":
        print("stopped; run the same command again to continue (finished re-trainings are kept)", file=sys.stderr)
        return 130
    where = result.where()
    m = len(result.comparisons)
    print(f"\n{m} comparison{'s' * (m != 1)} over {args.seeds} seed{'s' * (args.seeds != 1)} {where} (candidate minus "
          f"baseline; Holm over all of them; verdict at 0.05):\n", file=say)
    if args.format == "json":
        print(json.dumps({"seeds": args.seeds, "split": result.split, "study": result.study,
                          "comparisons": json.loads(significance_table(result.comparisons, "json", config.rewards)),
                          "wins": json.loads(wins_text(result.wins, "json"))}, indent=2))
    else:
        print(significance_table(result.comparisons, args.format, config.rewards))
    if not data:  # the wins are the comparisons' w/t/l column in csv and json
        print(f"\nwins / ties / losses over {args.seeds} seeds:\n")
        print(wins_text(result.wins, args.format))
    print(file=say)
    print(statistics_text(result.comparisons, args.seeds, result.split, run_child.get("split"), task=result.task),
          file=say)
    if metric_note(config.rewards):
        print(metric_note(config.rewards), file=say)
    if plot:
        from search.analysis.plots import plot_comparisons
        from search.analysis.significance import study_label

        subtitle = f"{args.seeds} seeds, {study_label({'child': study_child}, run_child)}"
        plot_comparisons(result.comparisons, plot, subtitle, config.rewards)
        print(f"\nwrote {plot}", file=say)
    return 0
