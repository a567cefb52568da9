"""The run store: one SQLite file per run, the only module that reads or writes run data.

The driver of a run is its only writer (``Store.open``); anything else (``actsearch top``, a notebook, a test) opens it
read-only (``Store.open(path, readonly=True)``) and can do so while the run goes: the file is in WAL mode, so readers
never block the writer nor see half a transaction. Commits are ``synchronous=FULL``: once a method returns, what it
wrote survives a crash of the process or the machine.

Tables
- ``meta``: key/value facts about the run (``schema_version``, ``name``, ``created_at``).
- ``candidates``: one row per proposal, keyed by its index: tokens, expression text, fingerprint, the proposal as the
  controller made it (``logp``, ``policy_version``), ``status`` ("proposed" -> "running" -> one of the final statuses
  ``ok | diverged | failed | timeout`` for a trained child, or ``screened | duplicate`` without one), reward, the
  child's result record as JSON (``metrics``), child seed, node, attempts and timestamps.
- ``events``: the controller's journal, in order: every ``ask`` call (n asked, indices returned) and every ``tell``
  (which candidate's reward was delivered). A unique index allows one tell per candidate, so a reward can reach the
  controller only once; the journal lets a resumed driver replay exactly what happened after its last checkpoint.
- ``updates``: every learner update (version, the event it happened at, statistics) and ``consumed``: which candidate
  rewards each update used (a candidate can be consumed by one update only).
- ``sessions``: every driver session (start, end, outcome, host, pid, driver CPU seconds).
- ``studies`` (schema 2): one row per set of child settings that significance re-trainings used, keyed by a hash of
  those settings: the run's own ``child:`` section, or it changed by ``--set`` (a bigger child, another task).
- ``retrainings`` (schema 2): every significance re-training, one per (study, activation, seed number), written as
  it arrives: the child's status, its score (the reward the search would give it) and its result record.
- ``significance`` (schema 2): each analysis of a study (candidates, baselines, seeds, the comparisons and the
  wins / ties / losses table, as ``search.analysis.stats`` dicts); the latest one per study is the current one.

The schema (statuses and the DDL of every version) is ``search.loop.store.schema``; the studies' reads and writes are
``search.loop.store.studies``; the rest is here. Adding tables later: append a list of DDL statements to
``MIGRATIONS``; existing run files are upgraded when a writer opens them, and the new data gets its methods here.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from search.loop.store.schema import (  # noqa: F401  (the store's names, importable from here)
    CHILD_STATUSES,
    FINAL_STATUSES,
    FREE_STATUSES,
    MIGRATIONS,
    OPEN_STATUSES,
    SCHEMA_VERSION,
    STORE_FILE,
    StoreError,
    _Connection,
)
from search.loop.store.studies import StudyRecords


class Store(StudyRecords):
    """One run's SQLite store. Writers: the run's driver only. Use as a context manager or call ``close()``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool):
        self._conn = conn
        self.path = path
        self.readonly = readonly

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path, readonly: bool = False, create: bool = False) -> "Store":
        """Open the store at ``path`` (a file, or a run directory holding ``store.sqlite``).

        readonly: open for reading while another process may be writing. create: make the file if missing (writers
        only). Raises ``FileNotFoundError`` when the store is missing and ``create`` is false.
        """
        path = Path(path)
        if path.is_dir():
            path = path / STORE_FILE
        if not path.exists() and (readonly or not create):
            raise FileNotFoundError(f"no run store at {path}")
        fresh = create and not path.exists()
        conn = None
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30,
                                       factory=_Connection)
            else:
                conn = sqlite3.connect(path, isolation_level=None, timeout=30, factory=_Connection)
            conn.path = path
            conn.row_factory = sqlite3.Row
            store = cls(conn, path, readonly)
            version = store.schema_version()  # reads the file: a damaged one fails here, before anything is written
            if version == 0 and not fresh:
                raise StoreError(f"{path}: not a run store (empty, or written by something else)")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path} was written by a newer actsearch (schema {version})")
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            if not readonly:
                store._migrate()
        except sqlite3.Error as exc:  # the file cannot even be opened
            raise StoreError(f"{path}: the run store cannot be opened ({exc})") from None
        except StoreError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"{exc}; nothing was changed (restore the file from a backup, or start a new run)") \
                from None
        return store

    @classmethod
    def in_memory(cls) -> "Store":
        """A fresh store that lives in this process only (searches in memory: ``search.loop.local``)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, factory=_Connection)
        conn.path = Path(":memory:")
        conn.row_factory = sqlite3.Row
        store = cls(conn, Path(":memory:"), False)
        conn.execute("PRAGMA foreign_keys=ON")
        store._migrate()
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable write transaction."""
        if self.readonly:
            raise StoreError("this store was opened read-only")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def schema_version(self) -> int:
        exists = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not exists:
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row["value"]) if row else 0

    def _migrate(self) -> None:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer actsearch (schema {current})")
        for version in range(current, SCHEMA_VERSION):
            with self._tx() as db:
                for ddl in MIGRATIONS[version]:
                    db.execute(ddl)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version + 1),))
                if version == 0:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('created_at', ?)", (repr(time.time()),))

    # ------------------------------------------------------------ meta

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row["value"])
        except json.JSONDecodeError:
            return row["value"]

    # ------------------------------------------------------------ the driver's writes

    def record_ask(self, n: int, candidates: Sequence[dict], at: float | None = None) -> int:
        """Journal one ``ask(n)`` call and insert the candidates it returned (status "proposed"), atomically.

        Each candidate dict has ``index, tokens, text, fingerprint, logp, policy_version, proposal`` (the proposal's
        ``to_dict()``). Returns the event's sequence number.
        """
        at = time.time() if at is None else at
        with self._tx() as db:
            first = candidates[0]["index"] if candidates else None
            cur = db.execute("INSERT INTO events (kind, n, first_index, count, at) VALUES ('ask', ?, ?, ?, ?)",
                             (n, first, len(candidates), at))
            db.executemany(
                "INSERT INTO candidates (idx, tokens, text, fingerprint, logp, policy_version, proposal, status, "
                "proposed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'proposed', ?)",
                [(c["index"], " ".join(c["tokens"]), c["text"], c["fingerprint"], c["logp"], c["policy_version"],
                  json.dumps(c["proposal"]), at) for c in candidates])
            return cur.lastrowid

    def record_pending(self, index: int, reason: str) -> None:
        """Candidate ``index`` waits for a child of the same function that is training now."""
        with self._tx() as db:
            self._set_open(db, index, "pending", reason=reason)

    def record_launch(self, index: int, seed: int, at: float | None = None) -> None:
        """A child for candidate ``index`` was submitted with ``seed`` (status "running", one more attempt)."""
        with self._tx() as db:
            self._set_open(db, index, "running", seed=seed, started_at=time.time() if at is None else at,
                           bump_attempts=True)

    def _set_open(self, db, index: int, status: str, reason: str | None = None, seed: int | None = None,
                  started_at: float | None = None, bump_attempts: bool = False) -> None:
        cur = db.execute(
            "UPDATE candidates SET status=?, reason=COALESCE(?, reason), seed=COALESCE(?, seed), "
            "started_at=COALESCE(?, started_at), attempts=attempts + ? WHERE idx=? AND status IN "
            "('proposed', 'pending', 'running')",
            (status, reason, seed, started_at, int(bump_attempts), index))
        if cur.rowcount != 1:
            raise StoreError(f"candidate {index} is not open (missing, or it already has a reward)")

    def record_result(self, index: int, status: str, reward: float, *, metrics: dict | None = None,
                      reason: str | None = None, node: str | None = None, duplicate_of: int | None = None,
                      at: float | None = None) -> int:
        """Give candidate ``index`` its final ``status`` and ``reward`` and journal the reward's delivery to the
        controller, atomically. Returns the tell event's sequence number.

        Raises ``StoreError`` if the candidate already has a reward: a result is never recorded twice.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        if not math.isfinite(reward):
            raise ValueError(f"reward of candidate {index} is {reward}; rewards must be finite")
        at = time.time() if at is None else at
        accuracy = metrics.get("accuracy") if metrics else None
        if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool) or not math.isfinite(accuracy):
            accuracy = None
        with self._tx() as db:
            cur = db.execute(
                "UPDATE candidates SET status=?, reward=?, accuracy=?, metrics=?, reason=COALESCE(?, reason), "
                "node=COALESCE(?, node), duplicate_of=?, finished_at=? WHERE idx=? AND reward IS NULL",
                (status, float(reward), accuracy, json.dumps(metrics) if metrics is not None else None, reason, node,
                 duplicate_of, at, index))
            if cur.rowcount != 1:
                raise StoreError(f"candidate {index} already has a result (or was never proposed)")
            cur = db.execute("INSERT INTO events (kind, candidate, at) VALUES ('tell', ?, ?)", (index, at))
            return cur.lastrowid

    def record_update(self, version: int, event_seq: int, consumed: Iterable[int], stats: dict,
                      at: float | None = None) -> bool:
        """Record learner update ``version`` (made at journal event ``event_seq``) and the rewards it consumed.

        Idempotent for a replayed update: returns False when the same update is already recorded, True when written.
        Raises ``StoreError`` if a different update with this version exists or a reward would be consumed twice.
        """
        consumed = sorted(int(c) for c in consumed)
        existing = self._conn.execute("SELECT event_seq FROM updates WHERE version=?", (version,)).fetchone()
        if existing is not None:
            before = [r["candidate"] for r in self._conn.execute(
                "SELECT candidate FROM consumed WHERE version=? ORDER BY candidate", (version,))]
            if existing["event_seq"] != event_seq or before != consumed:
                raise StoreError(f"update {version} is already recorded differently: the controller did not "
                                 f"repeat itself on replay")
            return False
        try:
            with self._tx() as db:
                db.execute("INSERT INTO updates (version, event_seq, stats, at) VALUES (?, ?, ?, ?)",
                           (version, event_seq, json.dumps(stats, default=float), time.time() if at is None else at))
                db.executemany("INSERT INTO consumed (candidate, version) VALUES (?, ?)",
                               [(c, version) for c in consumed])
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"update {version} would consume a reward twice: {exc}") from None
        return True

    def start_session(self, info: dict) -> int:
        """A driver session begins; returns its id."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO sessions (started_at, host, pid, info) VALUES (?, ?, ?, ?)",
                             (time.time(), socket.gethostname(), os.getpid(), json.dumps(info)))
            return cur.lastrowid

    def end_session(self, session: int, outcome: str, driver_cpu_s: float) -> None:
        """Session ``session`` ended with ``outcome`` (finished / interrupted / error)."""
        with self._tx() as db:
            db.execute("UPDATE sessions SET ended_at=?, outcome=?, driver_cpu_s=? WHERE id=?",
                       (time.time(), outcome, driver_cpu_s, session))

    # ------------------------------------------------------------ reads

    def events_after(self, seq: int) -> list[dict]:
        """Journal events with sequence number above ``seq``, in order."""
        return [dict(r) for r in self._conn.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq", (seq,))]

    def last_event_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) AS s FROM events").fetchone()
        return int(row["s"] or 0)

    def candidate(self, index: int) -> dict | None:
        row = self._conn.execute("SELECT * FROM candidates WHERE idx=?", (index,)).fetchone()
        return _candidate(row) if row else None

    def candidates(self, statuses: Sequence[str] | None = None, first: int = 0, limit: int | None = None) -> list[dict]:
        """Candidates in index order, optionally only those with one of ``statuses``, from index ``first``."""
        sql, args = "SELECT * FROM candidates WHERE idx >= ?", [first]
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        sql += " ORDER BY idx"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_candidate(r) for r in self._conn.execute(sql, args)]

    def open_candidates(self) -> list[dict]:
        """Candidates without a reward yet (proposed, pending or running), in index order."""
        return self.candidates(OPEN_STATUSES)

    def counts(self) -> dict[str, int]:
        """Number of candidates by status (every status present, zero when none)."""
        out = {s: 0 for s in OPEN_STATUSES + FINAL_STATUSES}
        for row in self._conn.execute("SELECT status, COUNT(*) AS n FROM candidates GROUP BY status"):
            out[row["status"]] = row["n"]
        return out

    def evaluated(self) -> int:
        """Children trained to a result (statuses ok, diverged, failed, timeout): what the budget counts."""
        row = self._conn.execute(
            f"SELECT COUNT(*) AS n FROM candidates WHERE status IN ({','.join('?' * len(CHILD_STATUSES))})",
            CHILD_STATUSES).fetchone()
        return int(row["n"])

    def proposals(self) -> int:
        row = self._conn.execute("SELECT COUNT(*) AS n FROM candidates").fetchone()
        return int(row["n"])

    def rewards_by_fingerprint(self) -> dict[str, tuple[float, int]]:
        """Fingerprint -> (reward, candidate index) of every trained child (the first one per function); a child that
        failed for the system's reasons (``fault`` "system" in its record) gives its function no reward."""
        out: dict[str, tuple[float, int]] = {}
        for row in self._conn.execute(
                f"SELECT fingerprint, reward, idx FROM candidates WHERE status IN "
                f"({','.join('?' * len(CHILD_STATUSES))}) AND (status = 'ok' OR metrics IS NULL OR "
                f"COALESCE(json_extract(metrics, '$.fault'), '') != 'system') ORDER BY idx", CHILD_STATUSES):
            out.setdefault(row["fingerprint"], (row["reward"], row["idx"]))
        return out

    def texts_by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, list[str]]:
        """Fingerprint -> the distinct texts of the run's candidates with that fingerprint, in index order: a
        function's duplicates record it under the texts they were proposed as (displays pick the simplest)."""
        wanted = list(dict.fromkeys(fingerprints))
        out: dict[str, dict[str, None]] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps the parameters of one statement
            chunk = wanted[start:start + 500]
            for row in self._conn.execute(f"SELECT fingerprint, text FROM candidates WHERE fingerprint IN "
                                          f"({','.join('?' * len(chunk))}) ORDER BY idx", chunk):
                out.setdefault(row["fingerprint"], {})[row["text"]] = None
        return {fingerprint: list(texts) for fingerprint, texts in out.items()}

    def top(self, k: int = 10, statuses: Sequence[str] = CHILD_STATUSES) -> list[dict]:
        """The ``k`` trained candidates with the highest reward (ties: earlier first), each with ``rank`` and
        ``proposed`` (how often the controller proposed that function: 1 + its duplicates); ``statuses``: of those
        statuses only (e.g. ("ok",): the children that trained to the end)."""
        rows = self._conn.execute(  # duplicates counted in one pass (a subquery per row was k x candidates: 59 s)
            f"SELECT c.*, 1 + COALESCE(d.n, 0) AS proposed FROM candidates c LEFT JOIN (SELECT duplicate_of, "
            f"COUNT(*) AS n FROM candidates WHERE duplicate_of IS NOT NULL GROUP BY duplicate_of) d "
            f"ON d.duplicate_of = c.idx WHERE c.status IN ({','.join('?' * len(statuses))}) "
            f"ORDER BY c.reward DESC, c.idx ASC LIMIT ?", (*statuses, k))
        out = []
        for rank, row in enumerate(rows, 1):
            item = _candidate(row)
            item["rank"] = rank
            out.append(item)
        return out

    def best(self) -> dict | None:
        """The best child trained in full (status ok): not a penalty, nor a score part-trained at a rung."""
        top = self.top(1, ("ok",))
        return top[0] if top else None

    def updates(self) -> list[dict]:
        """Every learner update in version order, with ``consumed``: the candidate indices whose rewards it used."""
        consumed: dict[int, list[int]] = {}
        for row in self._conn.execute("SELECT candidate, version FROM consumed ORDER BY candidate"):
            consumed.setdefault(row["version"], []).append(row["candidate"])
        out = []
        for row in self._conn.execute("SELECT * FROM updates ORDER BY version"):
            item = dict(row)
            item["stats"] = json.loads(item["stats"])
            item["consumed"] = consumed.get(item["version"], [])
            out.append(item)
        return out

    def update_count(self) -> int:
        row = self._conn.execute("SELECT COUNT(*) AS n FROM updates").fetchone()
        return int(row["n"])

    def told(self) -> list[int]:
        """Candidate indices whose reward reached the controller, in delivery order."""
        return [r["candidate"] for r in self._conn.execute(
            "SELECT candidate FROM events WHERE kind='tell' ORDER BY seq")]

    def audit(self) -> list[str]:
        """The run's bookkeeping invariants, as a list of violations (empty when the store is consistent).

        Every rewarded candidate was told exactly once and nothing else was; every asked index is a candidate; no
        function trained two children; each duplicate points at a trained twin with the same reward; updates are
        numbered 1, 2, ... and consume only told rewards.
        """
        problems = []
        db = self._conn
        final = ",".join(f"'{s}'" for s in FINAL_STATUSES)
        for row in db.execute(f"SELECT idx FROM candidates c WHERE status IN ({final}) AND (SELECT COUNT(*) FROM "
                              f"events e WHERE e.kind='tell' AND e.candidate=c.idx) != 1"):
            problems.append(f"candidate {row['idx']} has a result but was not told exactly once")
        for row in db.execute(f"SELECT e.candidate FROM events e JOIN candidates c ON c.idx = e.candidate "
                              f"WHERE e.kind='tell' AND c.status NOT IN ({final})"):
            problems.append(f"candidate {row['candidate']} was told but has no result")
        asked = db.execute("SELECT COALESCE(SUM(count), 0) AS n FROM events WHERE kind='ask'").fetchone()["n"]
        if asked != self.proposals():
            problems.append(f"the journal asked for {asked} candidates, the store holds {self.proposals()}")
        children = ",".join(f"'{s}'" for s in CHILD_STATUSES)
        for row in db.execute(f"SELECT fingerprint, COUNT(*) AS n FROM candidates WHERE status IN ({children}) "
                              f"GROUP BY fingerprint HAVING n > 1"):
            problems.append(f"function {row['fingerprint']} trained {row['n']} children")
        for row in db.execute("SELECT d.idx, d.reward, t.reward AS twin_reward, t.status AS twin_status, "
                              "d.fingerprint = t.fingerprint AS same FROM candidates d LEFT JOIN candidates t "
                              "ON t.idx = d.duplicate_of WHERE d.status = 'duplicate'"):
            if row["twin_status"] not in CHILD_STATUSES or not row["same"] or row["reward"] != row["twin_reward"]:
                problems.append(f"duplicate {row['idx']} does not match a trained twin")
        versions = [r["version"] for r in db.execute("SELECT version FROM updates ORDER BY version")]
        if versions != list(range(1, len(versions) + 1)):
            problems.append(f"update versions are not 1..{len(versions)}: {versions[:10]}")
        for row in db.execute("SELECT c.candidate FROM consumed c LEFT JOIN events e ON e.kind='tell' AND "
                              "e.candidate = c.candidate WHERE e.seq IS NULL"):
            problems.append(f"an update consumed candidate {row['candidate']}, which was never told")
        return problems

    def sessions(self) -> list[dict]:
        out = []
        for row in self._conn.execute("SELECT * FROM sessions ORDER BY id"):
            item = dict(row)
            item["info"] = json.loads(item["info"]) if item["info"] else {}
            out.append(item)
        return out


def _candidate(row: sqlite3.Row) -> dict:
    item = dict(row)
    item["index"] = item.pop("idx")
    item["tokens"] = tuple(item["tokens"].split())
    item["proposal"] = json.loads(item["proposal"])
    item["metrics"] = json.loads(item["metrics"]) if item["metrics"] else None
    return item
