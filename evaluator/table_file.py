"""The tabular benchmark: a file of functions with the accuracies their children reached, and the ``table`` task that
replays it.

A table is built by ``actsearch table build`` (``search.analysis.table_build``): every distinct function of a space
trained once per seed through the normal search machinery. Its file is JSON::

    {"format": "actsearch-table", "version": 1,
     "header": {"child": {...}, "space": {...}, "seeds": [...], "fingerprint_version": 3, "commit": ..., ...},
     "columns": ["text", "simplest", "equals", "fingerprint", "tokens", "accuracy", "status", "mean", "sd",
                 "seconds"],
     "rows": [[...], ...]}                       one row per function, best mean first

- ``text``: the canonical text of the function's first token string; ``simplest``: the shortest text among its known
  equivalents; ``equals``: the named baseline it equals ("" if none); ``fingerprint``: ``Expression.fingerprint``
  (None for a baseline the language cannot write, e.g. gelu); ``tokens``: the token string, space-separated ("" when
  the function was named, not enumerated).
- ``accuracy`` and ``status``: one entry per seed (accuracy None unless the child's status is "ok"); a diverged,
  failed or timed-out child stays in the table as such. ``mean`` and ``sd`` are over the seeds' rewards, a non-ok
  child counting ``header["failed_reward"]`` (0.0, as a search scores it). ``seconds``: mean wall time per child.

**Replay** (``child.task: table`` with ``child.table: PATH``): a child "trains" by looking up its function by
fingerprint and returning one of the recorded seeds, seed number ``child seed mod S``: deterministic, and a replay keeps
the table's real seed noise. A function the table lacks is "failed", saying why. A missing or damaged table file is a
``TableError`` (a ``UserError``: one line naming the file, exit code 2).
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

from evaluator.result import ChildResult
from search.language.errors import UserError
from search.language.identity import FINGERPRINT_VERSION
from search.language.numbers import mean_sd
from search.language.simplify import fingerprint_of

FORMAT = "actsearch-table"
VERSION = 3  # 2: a curve column (each seed's score at the header's rungs); 3: a steps column (each seed's child steps)
COLUMNS = ("text", "simplest", "equals", "fingerprint", "tokens", "accuracy", "status", "mean", "sd", "seconds",
           "curve", "steps")
COLUMNS_OF_VERSION = {1: COLUMNS[:-2], 2: COLUMNS[:-1], 3: COLUMNS}  # older files still load (no curves, no steps)
STATUSES = ("ok", "diverged", "failed", "timeout", "missing")  # "missing": no result for that seed


class TableError(UserError):
    """A table file that cannot be used: missing, unreadable, not a table, or built with other fingerprints."""


def row_scores(accuracy: Sequence[float | None], status: Sequence[str], failed_reward: float) -> list[float]:
    """The reward of each seed: its accuracy when "ok", else ``failed_reward`` (seeds without a result are left
    out)."""
    return [a if s == "ok" else failed_reward for a, s in zip(accuracy, status) if s != "missing"]


def summarize(accuracy: Sequence[float | None], status: Sequence[str], failed_reward: float) -> tuple:
    """``(mean, sd, row status)`` of one function's seeds. Row status: "ok" when every seed is ok, else the non-ok
    statuses, e.g. "diverged" or "ok+diverged"."""
    scores = row_scores(accuracy, status, failed_reward)
    mean, sd = mean_sd(scores)
    kinds = list(dict.fromkeys(sorted(status, key=STATUSES.index)))
    return mean, sd, "+".join(kinds)


class Table:
    """A loaded table: ``header``, ``rows`` (dicts keyed by ``COLUMNS``, best mean first) and lookups."""

    def __init__(self, path: Path, header: dict, rows: list[dict]):
        self.path, self.header, self.rows = path, header, rows
        self.by_fingerprint = {r["fingerprint"]: r for r in rows if r["fingerprint"]}
        self.by_name: dict[str, dict] = {}  # a row's text, and the baseline it equals -> the first (best) such row
        for r in rows:
            for name in (r["text"], r["equals"]):
                if name:
                    self.by_name.setdefault(name, r)
        self.seeds = len(header["seeds"])
        means = sorted(((r["mean"] or 0) for r in rows), reverse=True)
        self._ranks = {}  # mean -> 1-based rank, computed once (a table show asks for many)
        for k, m in enumerate(means):
            self._ranks.setdefault(m, k + 1)

    @staticmethod
    def draw(row: dict, seed: int) -> tuple[int, str, float | None]:
        """``(seed number, status, accuracy)`` a replayed child with ``seed`` gets: seed number ``seed mod S``, or the
        first seed with a result when that one has none ("failed" when none has)."""
        k = seed % len(row["accuracy"])
        if row["statuses"][k] == "missing":
            k = next((j for j, s in enumerate(row["statuses"]) if s != "missing"), k)
        status = row["statuses"][k]
        return k, ("failed" if status == "missing" else status), row["accuracy"][k]

    def steps_of(self, row: dict, k: int) -> int:
        """The child steps seed ``k`` of ``row`` trained: as recorded (a diverging child ends at its first non-finite
        loss), or ``child.steps`` for a table that recorded none (format 1 and 2: an upper bound)."""
        recorded = (row["steps"] or [None] * (k + 1))[k]
        return int(self.header.get("child", {}).get("steps", 0) if recorded is None else recorded)

    def rank_of(self, row: dict) -> int:
        """1-based rank of ``row`` by mean (ties share the better rank)."""
        mean = row["mean"] or 0
        if mean in self._ranks:
            return self._ranks[mean]
        return 1 + sum(1 for r in self.rows if (r["mean"] or 0) > mean)

    def find(self, activation: str) -> dict | None:
        """The row of an expression text (by fingerprint, so any equivalent text finds it) or a baseline name."""
        fingerprint = fingerprint_of(activation)
        if fingerprint is not None:
            return self.by_fingerprint.get(fingerprint)
        return self.by_name.get(activation.strip().lower())


def write_table(path: str | Path, header: dict, rows: Sequence[dict]) -> int:
    """Write a table atomically, one row per line (readable diffs); returns its size in bytes."""
    from search.language.files import atomic_write

    body = ",\n".join(json.dumps([r[c] for c in COLUMNS], separators=(",", ":")) for r in rows)
    text = (f'{{"format": "{FORMAT}", "version": {VERSION},\n"header": {json.dumps(header, sort_keys=True)},\n'
            f'"columns": {json.dumps(list(COLUMNS))},\n"rows": [\n{body}\n]}}\n')
    atomic_write(path, text)
    return len(text.encode())


def load_table(path: str | Path, search_path: Sequence[str] | None = None) -> Table:
    """Read and check a table file; raises ``TableError`` naming the file. A relative path is looked for in the
    current directory, then in ``search_path``. Cached per process while the file is unchanged."""
    found = resolve_table_path(path, search_path)
    stat = found.stat()
    return _load(str(found), stat.st_mtime_ns, stat.st_size)


def check_replay_space(table_path: str | Path, space, search_path: Sequence[str] | None = None) -> None:
    """Raises ``TableError`` unless the table holds the space a replay searches: a table of a space covers the same
    space or a part of it (as many core units, operators among its own); a table of named functions covers none.
    The one line says how much of the run's space the table holds. space: a ``search.language.space.Space``."""
    from search.language.space import Space

    table = load_table(table_path, search_path)
    own = table.header["space"]
    name = os.path.basename(table.path)
    if table.header["kind"] != "space":
        raise TableError(f"child.table: {name} holds {len(table.rows)} named functions, not a space: a search "
                         f"replaying it would fail nearly every child; replay a table of a space")
    unary = [op for op in space.unary if op in own["unary"]]
    binary = [op for op in space.binary if op in own["binary"]]
    if space.core_units == own["core_units"] and len(unary) == len(space.unary) and len(binary) == len(space.binary):
        return
    held = Space(space.core_units, unary, binary).size if space.core_units == own["core_units"] and unary and binary \
        else 0
    extra = [op for op in (*space.unary, *space.binary) if op not in (*unary, *binary)]
    what = (f"core_units {space.core_units} (the table's: {own['core_units']})" if space.core_units != own["core_units"]
            else f"operators it lacks ({', '.join(extra[:6])}{', ...' if len(extra) > 6 else ''})")
    raise TableError(f"space: the table {name} holds {held / space.size:.1%} of this space's {space.size:,} token "
                     f"strings: {what}; search the table's space or a part of it")


def resolve_table_path(path: str | Path, search_path: Sequence[str] | None = None) -> Path:
    if not str(path).strip():
        raise TableError("child.table: name the table file (e.g. tables/mnist1d-150.json) for task table")
    path = Path(path).expanduser()
    places = [path] if path.is_absolute() else [Path.cwd() / path] + [Path(p) / path for p in search_path or ()]
    for place in places:
        if place.is_file():
            return place.resolve()
    folder = next((place for place in places if place.is_dir()), None)
    if folder is not None:
        raise TableError(f"{path}: is a folder, not a table file (name the .json file in it)")
    raise TableError(f"{path}: no such table file" + (" (also looked in " + ", ".join(map(str, search_path)) + ")"
                                                       if search_path and not path.is_absolute() else ""))


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> Table:
    def bad(what: str) -> TableError:
        return TableError(f"{path}: {what}")

    try:
        with open(path, "rb") as fh:
            raw_text = fh.read().decode("utf-8")
        data = json.loads(raw_text)
    except RecursionError:
        raise bad("not a readable table file (JSON nested too deeply)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise bad(f"not a readable table file ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"not an actsearch table (no \"format\": \"{FORMAT}\")")
    version = data.get("version")
    if version not in COLUMNS_OF_VERSION:
        raise bad(f"table format version {json.dumps(version)[:20]}; this actsearch reads versions 1 to {VERSION}")
    header, columns, raw = data.get("header"), data.get("columns"), data.get("rows")
    names = COLUMNS_OF_VERSION[version]
    if not isinstance(header, dict) or columns != list(names) or not isinstance(raw, list):
        raise bad("damaged table: header, columns or rows missing or of the wrong shape")
    if header.get("fingerprint_version") != FINGERPRINT_VERSION:
        raise bad(f"built with fingerprint version {json.dumps(header.get('fingerprint_version'))[:20]}, this actsearch "
                  f"computes version {FINGERPRINT_VERSION}: rebuild the table")
    problem = _header_problem(header)
    if problem:
        raise bad(f"damaged table: header {problem}")
    first_line = _first_row_line(raw_text, len(raw))
    rows: list[dict] = []
    texts: dict[str, int] = {}
    fingerprints: dict[str, int] = {}
    for i, values in enumerate(raw):
        place = [f"line {first_line + i}"] if first_line else []
        if not isinstance(values, list) or len(values) != len(names):
            raise bad(f"damaged table: row {i + 1} has not {len(names)} columns")
        row = {"curve": None, "steps": None, **dict(zip(names, values))}
        if isinstance(row["text"], str) and row["text"]:
            place.append(repr(row["text"][:60]))
        where = f"row {i + 1}" + (f" ({': '.join(place)})" if place else "")
        problem = _row_problem(row, header)
        if problem is None:
            for key, seen, what in ((row["text"], texts, "text"), (row["fingerprint"], fingerprints, "function")):
                if key is not None and key in seen:
                    problem = f"repeats the {what} of row {seen[key] + 1}"
                    break
                if key is not None:
                    seen[key] = i
        if problem is None and rows and _order(rows[-1]) > _order(row):
            problem = "is out of order (rows go by mean, best first, then by text)"
        if problem:
            raise bad(f"{where}: {problem}")
        row["statuses"] = row["status"]  # per seed; "status" is made the row's summary below
        row["status"] = summarize(row["accuracy"], row["statuses"], header["failed_reward"])[2]
        rows.append(row)
    return Table(Path(path), header, rows)


def _order(row: dict) -> tuple:
    """The order ``search.analysis.table_build`` writes rows in: best mean first (no mean last), then by text."""
    return -(row["mean"] if row["mean"] is not None else -1.0), row["text"]


def _first_row_line(text: str, rows: int) -> int | None:
    """The line of the first row in a file laid out as ``write_table`` writes it (one row a line), else None."""
    lines = text.split("\n")
    start = next((k for k, line in enumerate(lines) if line.startswith('"rows": [')), None)
    if start is None or len(lines) < start + rows + 2:
        return None
    return start + 2


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _texts(v) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _optional(check):
    return lambda v: v is None or check(v)


# header field -> (check, what it must be); write_table's headers hold every one of them
_HEADER_FIELDS = {
    "child": (lambda v: isinstance(v, dict), "a mapping of child settings"),
    "space": (lambda v: isinstance(v, dict) and isinstance(v.get("core_units"), int) and _texts(v.get("unary"))
              and _texts(v.get("binary")), "a mapping with core_units (a whole number), unary and binary (lists of "
                                           "operator names)"),
    "seeds": (lambda v: isinstance(v, list) and 0 < len(v) <= 1000 and len(set(v)) == len(v)
              and all(isinstance(s, int) and not isinstance(s, bool) for s in v), "a list of distinct whole numbers"),
    "failed_reward": (_number, "a number"),
    "kind": (lambda v: v in ("space", "functions"), '"space" or "functions"'),
    "seed_kind": (_optional(lambda v: isinstance(v, str)), "text"),
    "reward": (_optional(lambda v: isinstance(v, str)), "text"),
    "runs": (_optional(_texts), "a list of run folders"),
    "study": (_optional(lambda v: isinstance(v, str)), "text or null"),
    "screened": (_optional(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
                 "a count or null"),
    "commit": (_optional(lambda v: isinstance(v, str)), "text or null"),
    "dirty": (_optional(lambda v: isinstance(v, bool)), "true, false or null"),
    "torch": (_optional(lambda v: isinstance(v, str)), "text or null"),
    "machine": (_optional(lambda v: isinstance(v, str)), "text or null"),
    "date": (_optional(lambda v: isinstance(v, str)), "text or null"),
    "command": (_optional(lambda v: isinstance(v, str)), "text or null"),
    # seconds of the command that wrote the file: of a resumed build, its last session (the rows' seconds, per child,
    # add up the children's time however many sessions trained them)
    "written_after_s": (_optional(lambda v: _number(v) and v >= 0), "seconds or null"),
    "migrated": (_optional(lambda v: isinstance(v, str)), "text or null"),  # benchmarks/migrate_table_fingerprints.py
    "rungs": (lambda v: isinstance(v, list) and len(v) <= 16 and all(isinstance(s, int) and not isinstance(s, bool)
                                                                     and s >= 1 for s in v)
              and all(b > a for a, b in zip(v, v[1:])), "increasing steps (the curves' rungs)"),
}
_REQUIRED = ("child", "space", "seeds", "failed_reward", "kind")
_HEX = frozenset("0123456789abcdef")
MEAN_TOLERANCE = 1e-5  # accuracies, means and sds are stored to 5 decimals (search.analysis.table_build._round)


def _header_problem(header: dict) -> str | None:
    for name in _REQUIRED:
        if name not in header:
            return f"has no {name!r}"
    for name, (check, what) in _HEADER_FIELDS.items():
        if name in header and not check(header[name]):
            return f"{name!r} must be {what}, got {json.dumps(header[name])[:60]}"
    return None


def _row_problem(row: dict, header: dict) -> str | None:
    """What is wrong with one row (before duplicates and order), or None."""
    from evaluator.activations import BASELINE_TEXTS

    text, fingerprint, acc, status = row["text"], row["fingerprint"], row["accuracy"], row["status"]
    if not isinstance(text, str) or not text.strip():
        return f"text must be an expression or a baseline name, got {json.dumps(text)[:40]}"
    for name in ("simplest", "equals", "tokens"):
        if not isinstance(row[name], str):
            return f"{name} must be text, got {json.dumps(row[name])[:40]}"
    seeds = len(header["seeds"])
    if not isinstance(status, list) or len(status) != seeds or any(s not in STATUSES for s in status):
        return f"status must be a list of {seeds} of {', '.join(STATUSES)}, got {json.dumps(status)[:60]}"
    if not isinstance(acc, list) or len(acc) != seeds:
        return f"accuracy must be a list of {seeds} (one per seed), got {json.dumps(acc)[:60]}"
    for k, (a, s) in enumerate(zip(acc, status)):
        if s == "ok" and not (_number(a) and 0.0 <= a <= 1.0):
            return f"seed {k} is ok but its accuracy {json.dumps(a)[:20]} is not a number in [0, 1]"
        if s != "ok" and a is not None:
            return f"seed {k} is {s} but has an accuracy ({json.dumps(a)[:20]}); only an ok seed has one"
    mean, sd, _ = summarize(acc, status, header["failed_reward"])
    for name, value in (("mean", mean), ("sd", sd)):
        stored = row[name]
        if stored is not None and not _number(stored):
            return f"{name} must be a number or null, got {json.dumps(stored)[:20]}"
        if (stored is None) != (value is None) or value is not None and abs(stored - value) > MEAN_TOLERANCE:
            return (f"{name} {json.dumps(stored)[:20]} is not the {name} of its seeds' rewards "
                    f"({'null' if value is None else f'{value:.5f}'})")
    curve, rungs = row["curve"], header.get("rungs") or []
    if curve is not None and not (isinstance(curve, list) and len(curve) == seeds and all(
            c is None or isinstance(c, list) and len(c) == len(rungs) and all(
                v is None or _number(v) and 0.0 <= v <= 1.0 for v in c) for c in curve)):
        return (f"curve must be null or a list of {seeds} (one per seed) of null or {len(rungs)} scores in [0, 1] "
                f"(one per rung), got {json.dumps(curve)[:60]}")
    steps, most = row["steps"], header["child"].get("steps")
    if steps is not None and not (isinstance(steps, list) and len(steps) == seeds and all(
            n is None or isinstance(n, int) and not isinstance(n, bool) and 0 <= n and (
                not isinstance(most, int) or n <= most) for n in steps)):
        return (f"steps must be null or a list of {seeds} (one per seed) of null or whole numbers from 0 to "
                f"{most if isinstance(most, int) else 'child.steps'}, got {json.dumps(steps)[:60]}")
    if row["seconds"] is not None and not (_number(row["seconds"]) and row["seconds"] >= 0):
        return f"seconds must be a number >= 0 or null, got {json.dumps(row['seconds'])[:20]}"
    if fingerprint is not None and not (isinstance(fingerprint, str) and len(fingerprint) == 16
                                        and set(fingerprint) <= _HEX):
        return f"fingerprint must be 16 hex digits or null, got {json.dumps(fingerprint)[:40]}"
    own = fingerprint_of(BASELINE_TEXTS.get(text.strip().lower(), text))
    if own != fingerprint:
        return (f"fingerprint {json.dumps(fingerprint)} is not that of its text ({own})" if own else
                f"has fingerprint {fingerprint} but its text is no expression of the language")
    return None


def study_problem(table: Table, activations: Sequence[str], seeds: int) -> str | None:
    """Why a significance study of ``activations`` over ``seeds`` paired seeds cannot be replayed from ``table``, or
    None: a function the table lacks (each re-training would fail, and a failure's score is no measurement of it), or
    more seeds than it records (seed k mod S again: the same few results counted as independent pairs)."""
    name = os.path.basename(table.path)
    missing = [a for a in activations if table.find(a) is None]
    if missing:
        return (f"{', '.join(missing[:3])} {'is' if len(missing) == 1 else 'are'} not in the table {name} "
                f"({len(table.rows)} functions): a replayed study compares only functions the table holds")
    if seeds > table.seeds:
        return (f"{seeds} seeds, but the table {name} records {table.seeds} a function: a replayed study would count "
                f"them again (seed k mod {table.seeds}) as if they were {seeds} independent pairs")
    return None


def replay_child(table_path: str, activation: str, seed: int, split: str = "val",
                 search_path: Sequence[str] | None = None, report=None) -> ChildResult:
    """The ``table`` task's child: look ``activation`` up and return the seed ``seed mod S`` it recorded, as a
    ``ChildResult``. With early stopping (``report``), it reports that seed's recorded curve at each rung and stops
    where it is told to, as the trained child would have. Never raises for the candidate's sake; ``TableError``
    propagates (a setup fault: a rung the table did not record)."""
    start = time.perf_counter()
    table = load_table(table_path, search_path)
    row = table.find(activation)
    if row is None:
        fingerprint = fingerprint_of(activation)
        which = f", fingerprint {fingerprint}" if fingerprint else ""
        result = ChildResult.failed(activation, seed, f"not in the table {os.path.basename(table.path)} "
                                    f"({len(table.rows)} functions{which})", "candidate", split=split,
                                    extra={"table_seconds": None, "table_seed": None})
    else:
        k, status, accuracy = table.draw(row, seed)
        facts = {"split": split, "steps": table.steps_of(row, k),
                 "extra": {"table_seconds": row["seconds"], "table_seed": k}}
        stop = _replayed_stop(table, row, k, report) if status == "ok" and report is not None else None
        if stop is not None:
            rung, step, value = stop
            facts.pop("steps")
            result = ChildResult.stopped(row["text"], seed, value, rung, step, **facts)
        elif status == "ok":
            result = ChildResult.ok(row["text"], seed, accuracy, **facts)
        elif status == "diverged":
            result = ChildResult.diverged(row["text"], seed, f"recorded diverged in the table (seed {k})", **facts)
        else:
            result = getattr(ChildResult, status)(row["text"], seed, f"recorded {status} in the table (seed {k})",
                                                  fault="candidate", **facts)
    result.device = "table"
    result.wall_s = time.perf_counter() - start
    return result


def _replayed_stop(table: Table, row: dict, k: int, report) -> tuple[int, int, float] | None:
    """Report seed ``k``'s recorded curve at ``report``'s rungs; ``(rung, step, score)`` where it was told to stop."""
    recorded = table.header.get("rungs") or []
    missing = [step for step in report.rungs if step not in recorded]
    if missing:
        raise TableError(f"fidelity.rungs: {os.path.basename(table.path)} recorded scores at steps "
                         f"{recorded or 'none (a table without curves)'}, not at {missing}; replay rungs it holds")
    curve = (row.get("curve") or [None] * (k + 1))[k]
    if curve is None:
        return None
    for step in report.rungs:
        value = curve[recorded.index(step)]
        if value is not None and not report(step, value):
            return report.stopped_at
    return None
