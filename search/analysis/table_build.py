"""Build and show tabular benchmarks (``actsearch table build`` / ``table show``); the file format and the replay
task are ``evaluator.table_file``.

Two kinds of table, both built through the normal machinery (Ray workers, the run store, resume by running the same
command again):

- **A space** (the config's controller is ``exhaustive``): seed ``k`` of the table is an exhaustive search of the
  config's space with run seed ``config.seed + k``, in the run directory ``RESULTS/NAME-seed<k>``; every distinct
  function that passes the screen trains once per seed. The rows come from those runs' stores.
- **Named functions** (``functions``: expression texts and baseline names): each is re-trained with seed numbers
  0..S-1 (child seed ``retrain_seed(config.seed, s)``: every function shares the initialisation and data order of
  seed number ``s``), as a study of the run directory ``RESULTS/NAME`` (``search.analysis.retrain``).

Either way the table is written only when every child has a result; a stopped build continues where it stopped.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from evaluator.table_file import COLUMNS, Table, load_table, summarize, write_table
from search.analysis.formatting import Column, format_rows
from search.language.errors import UserError
from search.language.expression import Expression, ExpressionError
from search.language.identity import FINGERPRINT_VERSION
from search.language.index import FunctionIndex
from search.language.simplify import fingerprint_of
from search.loop.config import Config, load_config
from search.loop.store.schema import SEARCH_ENDED

# The paper's eight best searched functions, re-trained on bigger models (Ramachandran et al. 2017, Table 2).
PAPER_FUNCTIONS = ("x * sigmoid(beta * x)", "max(x, sigmoid(x))", "cos(x) - x", "min(x, sin(x))", "atan(x)**2 - x",
                   "max(x, tanh(x))", "sinc(x) + x", "x * asinh(x)**2")
SHOWN_BASELINES = ("relu", "swish", "silu", "gelu", "elu", "selu", "leaky_relu", "prelu", "softplus", "tanh",
                   "sigmoid")


MAX_SEEDS = 100  # seeds per function a table build trains

# ---------------------------------------------------------------- building

def build_table(config_path: str, seeds: int, out: str | Path, results: str | Path = "results",
                name: str | None = None, overrides: Sequence[str] = (), functions: Sequence[str] = (),
                stream: TextIO | None = None, command: str | None = None) -> tuple[Path, int] | None:
    """Build (or continue building) the table of ``config_path``'s space, or of ``functions`` when given, with
    ``seeds`` seeds, and write it to ``out``. Returns ``(out, rows)``, or None when the build stopped before the end
    (run the same call again to continue). ``command``: the command line recorded in the header. Raises
    ``UserError`` for bad input."""
    stream = sys.stdout if stream is None else stream
    config = load_config(config_path, list(overrides))
    name = name or Path(config_path).stem
    out = Path(out)
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out}: is a folder; name the table file, e.g. {out}/table.json")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist")
    if not 1 <= seeds <= MAX_SEEDS:  # the one check of the range (the command line reads a whole number only)
        raise UserError(f"--seeds: must be from 1 to {MAX_SEEDS}, got {seeds}")
    if config.fidelity.rungs and config.fidelity.stop:
        raise UserError("fidelity.stop: a table records whole children (their learning curves at fidelity.rungs): "
                        "set fidelity.stop to false, or leave fidelity.rungs empty")
    started = time.time()
    if functions:
        done = _train_functions(config, Path(results) / name, functions, seeds, stream)
    else:
        if config.controller.kind != "exhaustive":
            raise UserError(f"controller.kind: a table of a space is built by exhaustive search; {config_path} has "
                            f"{config.controller.kind!r} (or name the functions to train with --functions)")
        done = _search_space(config, Path(results), name, seeds, stream)
    if done is None:
        return None
    rows, info = done
    header = _header(config, seeds, info, started, command)
    size = write_table(out, header, rows)
    print(f"wrote {out}: {len(rows):,} functions x {seeds} seed(s), {size / 1e6:.2f} MB", file=stream)
    return out, len(rows)


def _search_space(config: Config, results: Path, name: str, seeds: int, stream: TextIO):
    """One exhaustive run per seed (created or resumed), then the rows of their stores; None if a run stopped."""
    from search.loop.rundir import create_run
    from search.loop.session import run_search

    run_dirs = []
    for k in range(seeds):
        seeded = dataclasses.replace(config, seed=config.seed + k)
        run_dir = results / f"{name}-seed{k}"
        if run_dir.exists():
            _require_same_run(run_dir, seeded)
        else:
            create_run(run_dir, seeded)
        print(f"table seed {k}: {run_dir}", file=stream)
        result = run_search(run_dir, out=stream)
        if result.outcome not in SEARCH_ENDED:  # stopped: it goes on next time
            print(f"{run_dir}: {result.outcome}; run the same command again to continue", file=stream)
            return None
        if result.outcome in ("finished", "stalled"):
            print(f"{run_dir}: budget.children ({result.budget}) ended the search before the space did: the table "
                  f"holds the {result.evaluated:,} children it trained (a bigger budget continues it)", file=stream)
        run_dirs.append(run_dir)
    return _rows_from_runs(config, run_dirs)


def _require_same_run(run_dir: Path, config: Config) -> None:
    """``UserError`` unless ``run_dir`` is a run made with ``config``'s seed, space, controller, child and rewards:
    a table never mixes in children of other settings (or of a search run it was pointed at)."""
    from search.loop.rundir import is_run_dir, run_config
    from search.loop.store import Store

    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} exists but is not a run directory; pick another --name")
    with Store.open(run_dir, readonly=True) as store:
        stored = run_config(run_dir, store)
    differences = stored.section_differences(config, ("seed", "space", "controller", "child", "fidelity", "rewards"))
    if differences:
        field, old, new = differences[0]
        raise UserError(f"{run_dir}: was built with {field} {old!r}, this table needs {new!r}; pick another "
                        f"--name (or --results) for a table with other settings")


def _rows_from_runs(config: Config, run_dirs: Sequence[Path]) -> tuple[list[dict], dict]:
    from search.loop.store import CHILD_STATUSES, Store

    seeds = len(run_dirs)
    rungs = list(config.fidelity.rungs)  # with fidelity.stop false the runs recorded every child's learning curve
    found: dict[str, dict] = {}
    screened = 0
    for k, run_dir in enumerate(run_dirs):
        with Store.open(run_dir, readonly=True) as store:
            screened = store.counts()["screened"]
            curves: dict[int, list] = {}
            for r in store.rungs():
                curves.setdefault(r["candidate"], [None] * len(rungs))[r["rung"]] = _round(r["score"])
            for c in store.candidates(CHILD_STATUSES):
                row = found.setdefault(c["fingerprint"], {
                    "text": c["text"], "fingerprint": c["fingerprint"], "tokens": " ".join(c["tokens"]),
                    "accuracy": [None] * seeds, "status": ["missing"] * seeds, "wall": [None] * seeds,
                    "curve": [None] * seeds if rungs else None, "steps": [None] * seeds})
                if row["status"][k] != "missing":
                    continue  # a function trained twice in one run (after a system failure): its first child counts
                metrics = c["metrics"] or {}
                row["status"][k] = c["status"]
                row["accuracy"][k] = metrics.get("accuracy") if c["status"] == "ok" else None
                row["wall"][k] = metrics.get("wall_s")
                row["steps"][k] = _steps(metrics)
                if rungs:
                    row["curve"][k] = curves.get(c["index"], [None] * len(rungs))
    equivalents = _space_equivalents(config)
    rows = [_finish(r, config.rewards.failed, equivalents.get(r["fingerprint"], ())) for r in found.values()]
    return _ordered(rows), {"kind": "space", "runs": [str(d) for d in run_dirs], "screened": screened}


def _space_equivalents(config: Config) -> dict[str, list[str]]:
    """Fingerprint -> texts of every token string of the space (the known equivalents of each function); {} for a
    space too large to enumerate (``search.language.index.ENUMERATION_LIMIT``)."""
    index = FunctionIndex.of(config.space.build())
    if not index.enumerable:
        return {}
    return {fp: [index.expression(t).text for t in group] for fp, group in index.functions().items()}


def _train_functions(config: Config, run_dir: Path, functions: Sequence[str], seeds: int, stream: TextIO):
    """Re-train ``functions`` over ``seeds`` seed numbers as a study of ``run_dir``; None if stopped early."""
    from evaluator.activations import BASELINE_TEXTS, activation_label
    from search.analysis.retrain import retrain
    from search.analysis.significance import study_key
    from search.loop.progress import Progress
    from search.loop.rundir import LOG_FILE, check_study_sources, create_run, require_writable_run_dir, run_lock
    from search.loop.store import Store

    fingerprints: dict[str, str | None] = {}  # label -> its function's fingerprint (None: a baseline not writable)
    seen = set()
    for f in functions:
        label = activation_label(f)
        fingerprint = fingerprint_of(BASELINE_TEXTS.get(label, label))
        if (fingerprint or label) not in seen:
            seen.add(fingerprint or label)
            fingerprints[label] = fingerprint
    labels = list(fingerprints)
    if run_dir.exists():
        _require_same_run(run_dir, config)
    else:
        create_run(run_dir, config)
    run_dir = require_writable_run_dir(run_dir)
    key = study_key(config)  # the child settings and the run seed: another seed is another study
    with run_lock(run_dir), Store.open(run_dir) as store, open(run_dir / LOG_FILE, "a") as log:
        progress = Progress(stream, log, 30.0)
        check_study_sources(store, key, config, say=progress.event)  # one version of a user's child per study
        store.record_study(key, config.to_dict()["child"], [])
        done = {(r["activation"], r["seed_number"]) for r in store.retrainings(key, labels)}
        jobs = [(a, s) for s in range(seeds) for a in labels if (a, s) not in done]
        progress.event(f"table of {len(labels)} functions x {seeds} seeds (study {key} of {run_dir}): "
                       f"{len(labels) * seeds - len(jobs)} done, {len(jobs)} to train")
        try:
            if jobs and retrain(config, key, store, progress, jobs)[0] != "complete":
                print("stopped; run the same command again to continue", file=stream)
                return None
        finally:
            progress.close()
        retrained = store.retrainings(key, labels)
    rows = {label: {"text": label, "fingerprint": fingerprint, "tokens": "", "accuracy": [None] * seeds,
                    "status": ["missing"] * seeds, "wall": [None] * seeds, "curve": None,
                    "steps": [None] * seeds}
            for label, fingerprint in fingerprints.items()}
    for r in retrained:
        if r["seed_number"] < seeds:
            row = rows[r["activation"]]
            row["status"][r["seed_number"]] = r["status"]
            row["accuracy"][r["seed_number"]] = r["accuracy"] if r["status"] == "ok" else None
            row["wall"][r["seed_number"]] = r["metrics"].get("wall_s")
            row["steps"][r["seed_number"]] = _steps(r["metrics"])
    out = [_finish(r, config.rewards.failed, ()) for r in rows.values()]
    return _ordered(out), {"kind": "functions", "runs": [str(run_dir)], "study": key,
                           "seed_numbers": list(range(seeds))}


def _finish(row: dict, failed_reward: float, known: Sequence[str]) -> dict:
    """Complete a row: mean, sd, seconds, simplest text (``known``: other texts of the function) and the baseline it
    equals (a named baseline's row equals itself)."""
    from evaluator.activations import BASELINES
    from search.analysis.formatting import display_parts

    row["accuracy"] = [_round(a) for a in row["accuracy"]]  # first: the mean and sd are those of what is stored
    mean, sd, _ = summarize(row["accuracy"], row["status"], failed_reward)
    walls = [w for w in row.pop("wall") if w is not None]
    row.update(mean=_round(mean), sd=_round(sd), seconds=round(sum(walls) / len(walls), 2) if walls else None)
    row["simplest"], equals = display_parts(row["text"], known)
    row["equals"] = row["text"] if row["text"] in BASELINES else equals or ""
    return {c: row[c] for c in COLUMNS}


def _steps(metrics: dict) -> int | None:
    """The child steps a recorded child trained (a diverging child ends early), None when its record has none."""
    steps = metrics.get("steps")
    return int(steps) if isinstance(steps, (int, float)) and not isinstance(steps, bool) else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 5)


def _ordered(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (-(r["mean"] if r["mean"] is not None else -1.0), r["text"]))


def _header(config: Config, seeds: int, info: dict, started: float, command: str | None) -> dict:
    from search.loop.rundir import provenance_now

    prov = provenance_now()
    return {"child": config.to_dict()["child"], "space": config.to_dict()["space"],
            "seeds": [config.seed + k for k in range(seeds)] if info["kind"] == "space" else info["seed_numbers"],
            "seed_kind": "run seed" if info["kind"] == "space" else "re-training seed number",
            "failed_reward": config.rewards.failed, "reward": f"accuracy on the {config.child.split} split",
            "fingerprint_version": FINGERPRINT_VERSION, "kind": info["kind"], "runs": info["runs"],
            "study": info.get("study"), "screened": info.get("screened"),
            "commit": prov["git_commit"], "dirty": prov["git_dirty"], "torch": prov["torch"],
            "machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "command": command, "rungs": list(config.fidelity.rungs) if info["kind"] == "space" else [],
            "written_after_s": round(time.time() - started, 1)}


def machine() -> str:
    """This machine in one line: CPU model, cores, memory."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB"


# ---------------------------------------------------------------- showing

SHOW_COLUMNS = (
    Column("rank", "rank", str, right=True),
    Column("mean", "mean", lambda v: "-" if v is None else f"{v:.4f}", right=True),
    Column("sd", "sd", lambda v: "-" if v is None else f"{v:.4f}", right=True),
    Column("seeds", "seeds", str),
    Column("status", "status", str),
    Column("shown", "function", str),
    Column("seconds", "s/child", lambda v: "-" if v is None else f"{v:.1f}", right=True),
)


def _shown(row: dict) -> str:
    from search.language.errors import ExpressionError
    from search.language.simplify import readable_text

    text = row["simplest"] or row["text"]
    try:
        text = readable_text(text)  # a file written before readable forms holds sigmul(x, x): shown as x * sigmoid(x)
    except ExpressionError:
        pass  # a baseline's name
    return text + (f"  = {row['equals']}" if row["equals"] and row["equals"] != text else "")


def _display(table: Table, row: dict) -> dict:
    seeds = " ".join("-" if a is None else f"{a:.3f}" for a in row["accuracy"])
    return {**row, "rank": table.rank_of(row), "seeds": seeds, "shown": _shown(row)}


def _asked_label(text: str) -> str:
    """How a ``--rank`` the table lacks is named: its canonical text, or a baseline's name. ``UserError`` for
    neither."""
    try:
        return Expression.parse(text).text
    except ExpressionError as exc:
        if text.strip().lower() in SHOWN_BASELINES:
            return text
        raise UserError(f"--rank {text!r}: not a baseline name and not an expression ({exc})") from None


def _record(table: Table, row: dict | None, section: str, asked: str = "") -> dict:
    """A row as csv and json give it: the file's values unrounded, the canonical text beside the shown one; for a
    ``--rank`` ``asked`` that the table lacks (``row`` None), its label and "not in table"."""
    if row is None:
        label = _asked_label(asked)
        return {"section": section, "rank": None, "text": label, "shown": label, "equals": None, "fingerprint": None,
                "mean": None, "sd": None, "accuracy": [], "status": "not in table", "seconds": None}
    return {"section": section, "rank": table.rank_of(row), "text": row["text"], "shown": _shown(row),
            "equals": row["equals"] or None, "fingerprint": row["fingerprint"], "mean": row["mean"], "sd": row["sd"],
            "accuracy": row["accuracy"], "status": row["status"], "seconds": row["seconds"]}


def show_table(path: str | Path, top: int = 10, bottom: int = 5, ask: Sequence[str] = (), fmt: str = "table") -> str:
    """The header, the ``top`` and ``bottom`` rows and the rank of each expression or baseline in ``ask``; csv and
    json: those rows alone as data (one CSV table with a ``section`` column, or one JSON document with the header)."""
    table = load_table(path)
    h = table.header
    child = h.get("child", {})
    n = len(table.rows)
    if fmt in ("csv", "json"):
        records = [_record(table, r, "top") for r in table.rows[:top]]
        records += [_record(table, r, "bottom") for r in (table.rows[max(top, n - bottom):] if bottom else [])]
        records += [_record(table, table.find(a), "asked", a) for a in ask]
        if fmt == "json":
            return json.dumps({"file": str(path), "functions": n, "header": h, "rows": records}, indent=2)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        keys = list(records[0]) if records else ["section", "rank", "text"]
        writer.writerow(keys)
        for r in records:
            writer.writerow([" ".join("-" if a is None else repr(a) for a in r[k]) if k == "accuracy" else
                             ("" if r[k] is None else r[k]) for k in keys])
        return out.getvalue().rstrip("\n")
    lines = [f"{path}: {n:,} functions x {table.seeds} seed(s) ({h.get('kind')}); child {child.get('task')} "
             f"{child.get('model')} {child.get('steps')} steps, batch {child.get('batch_size')}; reward "
             f"{h.get('reward')}",
             f"built {h.get('date')} at commit {str(h.get('commit'))[:10]}{' (dirty)' if h.get('dirty') else ''} on "
             f"{h.get('machine')}"]
    if h.get("command"):
        lines.append(f"command: {h['command']}")
    sections = [("top", table.rows[:top]), ("bottom", table.rows[max(top, n - bottom):] if bottom else [])]
    for title, rows in sections:
        if rows:
            lines += ["", f"{title} {len(rows)}:", format_rows([_display(table, r) for r in rows], SHOW_COLUMNS, fmt)]
    if ask:
        asked = []
        for a in ask:
            row = table.find(a)
            if row is None:
                asked.append({"rank": "-", "mean": None, "sd": None, "seeds": "", "status": "not in table",
                              "shown": _asked_label(a), "seconds": None})
            else:
                asked.append(_display(table, row))
        lines += ["", f"asked (rank of {n:,}):", format_rows(asked, SHOW_COLUMNS, fmt)]
    return "\n".join(lines)
