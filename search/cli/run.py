"""``actsearch run`` and ``actsearch resume``: launch a search from a config file, or continue one."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from search.cli.common import whole
from search.language.errors import UserError

RESULTS_DIR = "results"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100  # characters of a run name (a file name has at most 255, and a table build adds -seed<k>)
PER_CHILD_FROM = 20  # children a session handles before its driver CPU is shown per child (its start is in it)


def register(sub) -> None:
    p = sub.add_parser("run", help="run a search from a YAML config (see configs/)",
                       description="Run a search: results/<name>/ gets the resolved config, the run store, controller "
                                   "checkpoints, provenance and a log; the run ends with the top-10 table.")
    p.add_argument("config", help="YAML search config, e.g. configs/quickstart.yaml")
    p.add_argument("--name", help="run name (default: the config file's name); the run lives in RESULTS/NAME")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override one setting, e.g. --set child.steps=200 (repeatable; values are YAML)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run of that name if it exists (only budget.*, resources.* and confirm.* may "
                        "change)")
    p.add_argument("--results", default=RESULTS_DIR, help="folder holding runs (default: results)")
    p.add_argument("--top", type=whole(0, 100_000), default=10, metavar="K", help="rows of the final table (default 10)")
    _add_accept_flag(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue a stopped or crashed run",
                       description="Continue a run from its directory: what was recorded stays, what was in flight "
                                   "runs again, the controller continues from its checkpoint.")
    p.add_argument("run_dir", help="the run's directory, e.g. results/quickstart")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="change a budget.*, resources.* or confirm.* setting, e.g. --set budget.children=200")
    p.add_argument("--top", type=whole(0, 100_000), default=10, metavar="K", help="rows of the final table (default 10)")
    _add_accept_flag(p)
    p.set_defaults(func=cmd_resume)


def _add_accept_flag(p) -> None:
    p.add_argument("--accept-changed-child", dest="accept_changed", action="store_true",
                   help="resume although the table file or the user child's source file changed since the run was "
                        "created (recorded in run.log and provenance.json); without it such a resume is refused")


def cmd_run(args) -> int:
    from evaluator.tasks import task_named
    from search.loop.config import check_child_code, load_config
    from search.loop.rundir import create_run, is_run_dir

    config = load_config(args.config, args.overrides)
    check_child_code(config)  # the user's module, the table file: refused before the run directory exists
    name = args.name if args.name is not None else Path(args.config).stem
    check_run_name(name, given=args.name is not None)
    results = results_folder(args.results)
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results}: is a file, not a folder for runs")
    run_dir = results / name
    if run_dir.exists():
        if not args.resume:
            raise UserError(f"{run_dir} already exists: continue it with `actsearch resume {run_dir}` (or add "
                            f"--resume), or pick another --name")
        if not is_run_dir(run_dir):
            raise UserError(f"{run_dir} exists but is not a run directory; pick another --name")
        return _run(run_dir, args.top, args.overrides, config_file=config, accept_changed=args.accept_changed)
    _check_proposer(config)
    _check_trainable(config)
    if task_named(config.child.task).reads_table:  # a replay of a space the table lacks would fail most children
        from evaluator.table_file import check_replay_space

        check_replay_space(config.child.table, config.space.build(), config.search_path())
    from search.loop.pool import check_address

    check_address(config)  # an unreachable cluster fails here, before the run directory exists
    create_run(run_dir, config)
    print(f"created {run_dir}")
    try:
        return _run(run_dir, args.top)
    except UserError as exc:  # a setup the session found wrong (resources, a cluster): say where the run is
        from search.loop.store import Store

        with Store.open(run_dir, readonly=True) as store:
            empty = store.evaluated() == 0
        if not empty or "actsearch resume" in str(exc):  # it says how to go on already
            raise
        raise UserError(f"{exc} ({run_dir} was created and holds no child yet: `actsearch resume {run_dir}` "
                        f"continues it once that is fixed, or remove it to start over)") from None


def check_run_name(name: str, given: bool = True) -> None:
    """``UserError`` unless ``name`` can name a run directory: at most ``MAX_NAME`` characters of letters, digits,
    '.', '_' and '-'. ``given``: it came from ``--name`` (else from the config file's name)."""
    what = "--name" if given else "the run name (the config file's name; choose another with --name)"
    if len(name) > MAX_NAME:
        raise UserError(f"{what} {name[:40]!r}...: {len(name):,} characters; a run name has at most {MAX_NAME}")
    if not _NAME.match(name):
        raise UserError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' (no '/'), starting with a letter "
                        f"or digit")


def results_folder(text: str) -> Path:
    """``--results`` as a folder; ``UserError`` when it is empty (``Path("")`` is the current folder: a whole run
    would land among the user's files)."""
    if not text.strip():
        raise UserError("--results: empty; name the folder that holds runs, e.g. --results results")
    return Path(text)


def cmd_resume(args) -> int:
    return _run(Path(args.run_dir), args.top, args.overrides, accept_changed=args.accept_changed)


def _check_trainable(config) -> None:
    """``UserError`` when the space is small enough to enumerate (``FunctionIndex.enumerable``) and none of its
    functions passes the screen: every candidate would be screened and no child trained. The walk stops at the first
    function that passes; a space too large to enumerate is warned about at the end instead (``_run``)."""
    from search.language.index import FunctionIndex

    space = config.space.build()
    index = FunctionIndex.of(space)
    reject = config.rewards.reject_linear
    if not index.enumerable or any(index.verdict(tokens, reject).ok for tokens in space.enumerate()):
        return
    kinds = "constant, linear or not finite" if reject else "constant or not finite"
    raise UserError(f"space: none of its {space.size:,} token strings computes a function that passes the screen "
                    f"(each is {kinds}), so no child would train; add operators to space.unary or space.binary")


def _check_proposer(config) -> None:
    """Build the proposer once before anything is created, so a config it rejects leaves no run directory."""
    from controller import make_proposer

    try:
        make_proposer(config.controller, config.space.build(), config.seed)
    except ValueError as exc:
        raise UserError(f"controller: {exc}") from None


def _run(run_dir: Path, top: int, overrides=(), config_file=None, accept_changed: bool = False) -> int:
    """One session of the run in ``run_dir``, then its summary and top table. ``config_file``: a config given with
    ``run --resume``: it must describe the same search, and its budget / resources become the overrides.
    ``accept_changed``: go on although a file that defines the reward changed (``--accept-changed-child``)."""
    from search.analysis.confirm import CONFIRM_AFTER, answer_text, confirm_run
    from search.analysis.formatting import top_table
    from search.loop.fidelity import early_stopping_text
    from search.loop.session import STALL_PROPOSALS, run_search
    from search.loop.store import Store

    if config_file is not None:
        overrides = _resume_overrides(run_dir, config_file)
    _check_resumed_child_code(run_dir, overrides, accept_changed)
    _warn_confirm(run_dir, overrides)
    try:
        result = run_search(run_dir, overrides=tuple(overrides))
        confirmation = None
        if result.outcome in CONFIRM_AFTER:  # the budget is spent: re-train the best against the baselines
            confirmation = confirm_run(run_dir, overrides)
    except KeyboardInterrupt:  # a Ctrl-C outside a session's own handling (connecting to Ray, between the stages)
        from search.loop.rundir import LOG_FILE

        with open(run_dir / LOG_FILE, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} interrupted (Ctrl-C) between the run's stages\n")
        print(f"\nstopped; continue with `actsearch resume {run_dir}` (everything recorded is kept)", file=sys.stderr)
        return 130
    from search.loop.rundir import run_config

    with Store.open(run_dir, readonly=True) as store:
        rows = store.top(top)
        config = run_config(run_dir, store)
        rewards = config.rewards
        stopping = early_stopping_text(store.child_steps(), config) if config.fidelity.rungs else ""
    counts = result.counts
    duplicates = counts.get("duplicate", 0)
    free = f"{counts.get('screened', 0)} screened, {duplicates} duplicate{'s' * (duplicates != 1)}"
    cpu = ""
    if result.driver_cpu_ms_per_candidate is not None:  # the session's start is in it: per child only over many
        n = result.session_children
        cpu = f"; driver CPU {result.driver_cpu_ms_per_candidate:.1f} ms per child" if n >= PER_CHILD_FROM else \
            f"; driver CPU {result.driver_cpu_ms_per_candidate * n / 1000:.1f} s for this session's {n} " \
            f"child{'ren' * (n != 1)}, its start included"
    if confirmation is not None:  # the answer first, then how the search went and the tables
        print("\n" + answer_text(confirmation, rewards))
    children = f"{result.evaluated}/{result.budget}" if result.evaluated <= result.budget else \
        f"{result.evaluated} (budget {result.budget})"  # a resume that lowered the budget
    print(f"\n{run_dir}: {result.outcome}: {children} children, {result.proposals} proposals "
          f"({free}), {result.updates} controller updates{cpu}")
    if stopping:
        print(f"early stopping: {stopping}")
    if result.evaluated == 0 and counts.get("screened", 0):
        print(f"no child trained: none of the {counts['screened']} functions proposed passed the screen; the space may "
              f"hold no trainable function (`actsearch space` counts them)", file=sys.stderr)
    if result.outcome == "stalled":
        print(f"stopped early: the last {STALL_PROPOSALS} proposals brought no function that was not trained, "
              f"screened or in training already; the space may hold fewer trainable functions than the budget "
              f"(`actsearch space` counts them)", file=sys.stderr)
    if rows:
        print()
        print(top_table(rows, rewards=rewards))
    if confirmation is not None and confirmation.outcome == "complete":
        from search.analysis.significance import significance_table

        home = confirmation.studies[0]
        print(f"\nconfirmation, {confirmation.seeds} seeds, {home.label}:\n")
        print(significance_table(home.result.comparisons, rewards=rewards))
    if confirmation is not None and confirmation.outcome == "interrupted":
        print(f"\nstopped during the confirmation; continue with `actsearch resume {run_dir}` (finished "
              f"re-trainings are kept)", file=sys.stderr)
        return 130
    if result.outcome == "interrupted":
        print(f"\nstopped; continue with `actsearch resume {run_dir}`", file=sys.stderr)
        return 130
    return 0


def _warn_confirm(run_dir: Path, overrides) -> None:
    """Print the confirm section's warnings (too few seeds for a verdict, the selection split) before the session,
    so they come before any compute is spent."""
    from search.analysis.confirm import confirm_warnings, session_config
    from search.loop.rundir import is_run_dir

    if is_run_dir(run_dir):
        for warning in confirm_warnings(session_config(run_dir, overrides)):
            print(warning, file=sys.stderr)


def _check_resumed_child_code(run_dir: Path, overrides, accept_changed: bool = False) -> None:
    """``check_child_code`` on the config a session of the run in ``run_dir`` would run, so a user's module or a table
    that no longer loads is refused in one line before the session starts, and so is one whose file changed since the
    run was created (unless ``accept_changed``: the change is then recorded). A folder that is no run is left to
    ``run_search`` to name."""
    from search.loop.config import check_child_code, check_resume_overrides, config_with_overrides
    from search.loop.rundir import check_reward_sources, is_run_dir, record_reward_sources, run_config
    from search.loop.store import Store

    if not is_run_dir(run_dir):
        return
    check_resume_overrides(overrides)
    with Store.open(run_dir, readonly=True) as store:
        config = config_with_overrides(run_config(run_dir, store), overrides)
    check_child_code(config)
    sources, changes, unrecorded = check_reward_sources(run_dir, config, accept_changed)
    if unrecorded:  # a run made before the files were recorded, or a change accepted: recorded before the session
        from search.loop.pool import check_address

        check_address(config)  # a session that cannot start records nothing
        record_reward_sources(run_dir, sources, changes)


def _resume_overrides(run_dir: Path, config) -> list[str]:
    """``run CONFIG --resume`` on an existing run: the config's budget / resources settings as ``--set`` overrides;
    ``UserError`` naming the first field of the search itself that differs from the run's."""
    import yaml

    from search.loop.config import RESUMABLE_SECTIONS, SEARCH_SECTIONS
    from search.loop.rundir import run_config
    from search.loop.store import Store

    with Store.open(run_dir, readonly=True) as store:
        stored = run_config(run_dir, store)
    differences = stored.section_differences(config, SEARCH_SECTIONS)
    if differences:
        name, old, new = differences[0]
        raise UserError(f"{name}: the run {run_dir} has {old!r}, this config has {new!r}; a resumed run can change "
                        f"only {' and '.join(RESUMABLE_SECTIONS)} settings (start a new run with another --name)")
    return [f"{name}={yaml.safe_dump(new, default_flow_style=True).strip().removesuffix('...').strip()}"
            for name, old, new in stored.section_differences(config, RESUMABLE_SECTIONS)]
