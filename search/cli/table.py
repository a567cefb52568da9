"""``actsearch table build`` and ``actsearch table show``: the tabular benchmark (``search.analysis.table_build``)."""
from __future__ import annotations

import shlex
from pathlib import Path

from search.cli.common import output_file, whole
from search.language.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("table", help="build or show a tabular benchmark (every function of a space, trained)",
                       description="Tabular benchmarks: a file with every function of a space (or a named list) and "
                                   "the accuracies their children reached; `child.task: table` replays one.")
    tsub = p.add_subparsers(dest="table_command", required=True, metavar="ACTION")

    b = tsub.add_parser("build", help="train every function of a config's space (or --functions) and write the table",
                        description="Train every distinct function of the config's space that passes the screen "
                                    "(an exhaustive run per seed, RESULTS/NAME-seed<k>), or the --functions named, "
                                    "and write the table. Stopped or crashed, the same command continues it.")
    b.add_argument("config", help="YAML search config, e.g. configs/table.yaml (controller.kind exhaustive)")
    b.add_argument("--seeds", type=whole(1, 100), default=2, help="seeds per function (default 2; 1 to 100)")
    b.add_argument("--out", required=True, help="the table file to write, e.g. tables/mnist1d-150.json")
    b.add_argument("--name", help="run name prefix (default: the config file's name)")
    b.add_argument("--results", default="results", help="folder holding the runs (default: results)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one setting, e.g. --set child.steps=500 (repeatable)")
    b.add_argument("--functions", action="append", default=[], metavar="LIST",
                   help="train these instead of the space: comma-separated expressions or baseline names, 'paper' "
                        "(the paper's top 8), 'baselines' (every named baseline) (repeatable)")
    b.add_argument("--top", type=whole(1, 100_000), metavar="K",
                   help="with --of: also train the K best functions of that table")
    b.add_argument("--of", metavar="TABLE", help="the table --top picks from")
    b.set_defaults(func=cmd_build)

    s = tsub.add_parser("show", help="print a table's top and bottom, and where functions rank",
                        description="Print a table's header, its best and worst functions, and the rank of each "
                                    "--rank expression or baseline (found by fingerprint: any equivalent text works).")
    s.add_argument("table", help="a table file, e.g. tables/mnist1d-150.json")
    s.add_argument("--top", type=whole(0, 1_000_000), default=10, help="best rows to show (default 10)")
    s.add_argument("--bottom", type=whole(0, 1_000_000), default=5, help="worst rows to show (default 5)")
    s.add_argument("--rank", action="append", default=[], metavar="FUNCTION",
                   help="an expression or baseline name whose rank to show (repeatable)")
    s.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    s.set_defaults(func=cmd_show)


def function_list(items: list[str], top: int | None, of: str | None) -> list[str]:
    """The functions ``--functions`` / ``--top --of`` name, in order: 'paper' and 'baselines' expanded."""
    from evaluator.activations import BASELINES
    from evaluator.table_file import load_table
    from search.analysis.table_build import PAPER_FUNCTIONS
    from search.cli.child import split_activations

    if (top is None) != (of is None):
        raise UserError("--top and --of go together: --top K --of TABLE trains the K best functions of TABLE")
    out: list[str] = []
    for item in items:
        for part in split_activations(item, "--functions"):
            key = part.strip().lower()
            out += list(PAPER_FUNCTIONS) if key == "paper" else list(BASELINES) if key == "baselines" else [part]
    if of is not None:
        out += [r["text"] for r in load_table(of).rows[:top]]
    return out


def cmd_build(args) -> int:
    from search.analysis.table_build import build_table

    output_file(args.out, "--out", "table.json")  # before hours of training
    functions = function_list(args.functions, args.top, args.of)
    from search.cli.run import check_run_name, results_folder

    check_run_name(args.name if args.name is not None else Path(args.config).stem, given=args.name is not None)
    results_folder(args.results)
    command = " ".join(["actsearch table build", shlex.quote(args.config), f"--seeds {args.seeds}",
                        f"--out {shlex.quote(args.out)}"]
                       + [f"--name {shlex.quote(args.name)}"] * (args.name is not None)
                       + [f"--results {shlex.quote(str(args.results))}"] * (args.results != "results")
                       + [f"--set {shlex.quote(o)}" for o in args.overrides]
                       + [f"--functions {shlex.quote(f)}" for f in args.functions]
                       + ([f"--top {args.top} --of {shlex.quote(args.of)}"] if args.of else []))
    done = build_table(args.config, args.seeds, args.out, args.results, args.name, args.overrides, functions,
                       command=command)
    return 0 if done else 130


def cmd_show(args) -> int:
    from search.analysis.table_build import show_table

    print(show_table(args.table, args.top, args.bottom, args.rank, args.format))
    return 0
