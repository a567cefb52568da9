"""``actsearch run`` and ``actsearch resume``: launch a search from a config file, or continue one."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from search.cli import UserError

RESULTS_DIR = "results"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def register(sub) -> None:
    p = sub.add_parser("run", help="run a search from a YAML config (see configs/)",
                       description="Run a search: results/<name>/ gets the resolved config, the run store, controller "
                                   "checkpoints, provenance and a log; the run ends with the top-10 table.")
    p.add_argument("config", help="YAML search config, e.g. configs/quickstart.yaml")
    p.add_argument("--name", help="run name (default: the config file's name); the run lives in RESULTS/NAME")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one setting, e.g. --set child.steps=200 (repeatable; values are YAML)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run of that name if it exists (only budget.* and resources.* may change)")
    p.add_argument("--results", default=RESULTS_DIR, help="folder holding runs (default: results)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="rows of the final table (default 10)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a stopped or crashed run",
                       description="Continue a run from its directory: what was recorded stays, what was in flight "
                                   "runs again, the controller continues from its checkpoint.")
    p.add_argument("run_dir", help="the run's directory, e.g. results/quickstart")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="change a budget.* or resources.* setting, e.g. --set budget.children=200")
    p.add_argument("--top", type=int, default=10, metavar="K", help="rows of the final table (default 10)")
    p.set_defaults(func=cmd_resume)


def cmd_run(args) -> int:
    from search.config import load_config

    config = load_config(args.config, args.overrides)
    name = args.name if args.name is not None else Path(args.config).stem
    if not _NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (no '/'), starting with a letter "
                        f"or digit")
    run_dir = Path(args.results) / name
    from search.run import create_run, is_run_dir

    if run_dir.exists():
        if not args.resume:
            raise UserError(f"{run_dir} already exists: continue it with `actsearch resume {run_dir}` (or add "
                            f"--resume), or pick another --name")
        if not is_run_dir(run_dir):
            raise UserError(f"{run_dir} exists but is not a run directory; pick another --name")
        return _run(run_dir, args.top, new_config=config)
    _check_proposer(config)
    import ray

    from search.run import connect_ray

    started = connect_ray(config)  # an unreachable cluster fails here, before the run directory exists
    try:
        create_run(run_dir, config)
        print(f"created {run_dir}")
        return _run(run_dir, args.top)
    finally:
        if started:
            ray.shutdown()


def cmd_resume(args) -> int:
    from search.config import RESUMABLE_SECTIONS, apply_override, config_from_dict, load_config
    from search.run import CONFIG_FILE, is_run_dir

    run_dir = Path(args.run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a run directory (no {CONFIG_FILE} and store.sqlite); start one with "
                        f"`actsearch run CONFIG --name NAME`")
    if args.overrides:
        for override in args.overrides:
            section = override.partition("=")[0].strip().split(".")[0]
            if section not in RESUMABLE_SECTIONS:
                raise UserError(f"--set {override}: a resumed run can change only "
                                f"{' and '.join(s + '.*' for s in RESUMABLE_SECTIONS)} settings")
    new_config = None
    if args.overrides:
        raw = load_config(run_dir / CONFIG_FILE).to_dict()
        for override in args.overrides:
            apply_override(raw, override)
        new_config = config_from_dict(raw)
    return _run(run_dir, args.top, new_config)


def _check_proposer(config) -> None:
    """Build the proposer once before anything is created, so a config it rejects leaves no run directory."""
    from controller import make_proposer

    try:
        make_proposer(config.controller, config.space.build(), config.seed)
    except ValueError as exc:
        raise UserError(f"controller: {exc}") from None


def _run(run_dir: Path, top: int, new_config=None) -> int:
    from search.run import run_search
    from search.store import Store
    from search.tables import top_table

    result = run_search(run_dir, new_config=new_config)
    with Store.open(run_dir, readonly=True) as store:
        rows = store.top(top)
    counts = result.counts
    duplicates = counts.get("duplicate", 0)
    free = f"{counts.get('screened', 0)} screened, {duplicates} duplicate{'s' * (duplicates != 1)}"
    cpu = f"; driver CPU {result.driver_cpu_ms_per_candidate:.1f} ms per child" \
        if result.driver_cpu_ms_per_candidate is not None else ""
    print(f"\n{run_dir}: {result.outcome}: {result.evaluated}/{result.budget} children, {result.proposals} proposals "
          f"({free}), {result.updates} controller updates{cpu}")
    if rows:
        print()
        print(top_table(rows))
    if result.outcome == "interrupted":
        print(f"\nstopped; continue with `actsearch resume {run_dir}`", file=sys.stderr)
        return 130
    return 0
