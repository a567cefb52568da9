"""The tabular benchmark: a file of functions with the accuracies their children reached, and the ``table`` task that
replays it.

A table is built by ``actsearch table build`` (``search.analysis.tabular``): every distinct function of a space
trained once per seed through the normal search machinery. Its file is JSON::

    {"format": "actsearch-table", "version": 1,
     "header": {"child": {...}, "space": {...}, "seeds": [...], "fingerprint_version": 2, "commit": ..., ...},
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
import statistics
import time
from pathlib import Path
from typing import Sequence

from search.language.errors import UserError
from search.language.identity import FINGERPRINT_VERSION
from search.language.simplify import fingerprint_of

FORMAT = "actsearch-table"
VERSION = 1
COLUMNS = ("text", "simplest", "equals", "fingerprint", "tokens", "accuracy", "status", "mean", "sd", "seconds")
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
    mean = statistics.fmean(scores) if scores else None
    sd = statistics.stdev(scores) if len(scores) > 1 else None
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
        self.seeds = len(header.get("seeds", [])) or (len(rows[0]["accuracy"]) if rows else 0)

    @staticmethod
    def draw(row: dict, seed: int) -> tuple[int, str, float | None]:
        """``(seed number, status, accuracy)`` a replayed child with ``seed`` gets: seed number ``seed mod S``, or the
        first seed with a result when that one has none ("failed" when none has)."""
        k = seed % len(row["accuracy"])
        if row["statuses"][k] == "missing":
            k = next((j for j, s in enumerate(row["statuses"]) if s != "missing"), k)
        status = row["statuses"][k]
        return k, ("failed" if status == "missing" else status), row["accuracy"][k]

    def rank_of(self, row: dict) -> int:
        """1-based rank of ``row`` by mean (ties share the better rank)."""
        return 1 + sum(1 for r in self.rows if (r["mean"] or 0) > (row["mean"] or 0))

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


def resolve_table_path(path: str | Path, search_path: Sequence[str] | None = None) -> Path:
    if not str(path).strip():
        raise TableError("child.table: name the table file (e.g. tables/mnist1d-150.json) for task table")
    path = Path(path).expanduser()
    places = [path] if path.is_absolute() else [Path.cwd() / path] + [Path(p) / path for p in search_path or ()]
    for place in places:
        if place.is_file():
            return place.resolve()
    raise TableError(f"{path}: no such table file" + (" (also looked in " + ", ".join(map(str, search_path)) + ")"
                                                       if search_path and not path.is_absolute() else ""))


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> Table:
    def bad(what: str) -> TableError:
        return TableError(f"{path}: {what}")

    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise bad(f"not a readable table file ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"not an actsearch table (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise bad(f"table format version {data.get('version')!r}; this actsearch reads version {VERSION}")
    header, columns, raw = data.get("header"), data.get("columns"), data.get("rows")
    if not isinstance(header, dict) or columns != list(COLUMNS) or not isinstance(raw, list):
        raise bad("damaged table: header, columns or rows missing or of the wrong shape")
    if header.get("fingerprint_version") != FINGERPRINT_VERSION:
        raise bad(f"built with fingerprint version {header.get('fingerprint_version')!r}, this actsearch computes "
                  f"version {FINGERPRINT_VERSION}: rebuild the table")
    rows = []
    for i, values in enumerate(raw):
        if not isinstance(values, list) or len(values) != len(COLUMNS):
            raise bad(f"damaged table: row {i + 1} has not {len(COLUMNS)} columns")
        row = dict(zip(COLUMNS, values))
        acc, status = row["accuracy"], row["status"]
        if (not isinstance(acc, list) or not isinstance(status, list) or len(acc) != len(status) or not acc
                or any(s not in STATUSES for s in status)
                or any(not (a is None or isinstance(a, (int, float)) and math.isfinite(a)) for a in acc)
                or not isinstance(row["text"], str)):
            raise bad(f"damaged table: row {i + 1} ({str(row['text'])[:40]}) has bad accuracies or statuses")
        row["statuses"] = status  # per seed; "status" is made the row's summary below
        row["status"] = summarize(acc, status, header.get("failed_reward", 0.0))[2]
        rows.append(row)
    return Table(Path(path), header, rows)


def replay_child(table_path: str, activation: str, seed: int, split: str = "val",
                 search_path: Sequence[str] | None = None) -> dict:
    """The ``table`` task's child: look ``activation`` up and return the seed ``seed mod S`` it recorded, in
    ``train_child``'s record format. Never raises for the candidate's sake; ``TableError`` propagates (a setup fault)."""
    start = time.perf_counter()
    table = load_table(table_path, search_path)
    record = {"status": "failed", "accuracy": None, "split": split, "train_loss": None, "steps": 0, "wall_s": 0.0,
              "images_per_s": None, "device": "table", "error": None, "activation": activation, "seed": seed,
              "fault": "candidate", "table_seconds": None, "table_seed": None}
    row = table.find(activation)
    if row is None:
        fingerprint = fingerprint_of(activation)
        record["error"] = (f"not in the table {os.path.basename(table.path)} ({len(table.rows)} functions"
                           f"{', fingerprint ' + fingerprint if fingerprint else ''})")
    else:
        k, status, accuracy = table.draw(row, seed)
        record.update(status=status, accuracy=accuracy if status == "ok" else None, table_seconds=row["seconds"],
                      table_seed=k,
                      activation=row["text"], steps=table.header.get("child", {}).get("steps", 0))
        record["fault"] = None if record["status"] == "ok" else "candidate"
        if record["status"] != "ok":
            record["error"] = f"recorded {record['status']} in the table (seed {k})"
    record["wall_s"] = time.perf_counter() - start
    return record
