"""The run store's re-training studies (schema 2): the child settings of each study, every re-training as it
arrives, and each analysis of a study (significance); and early stopping's rung decisions (schema 3). A mixin of
``search.loop.store.Store``."""
from __future__ import annotations

import json
import math
import sqlite3
import time
from typing import Sequence

from search.loop.store.schema import CHILD_STATUSES, StoreError

CONFIRMATION_META = "confirmation_analyses"  # meta: study key -> the id of the run's confirmation's analysis of it


class StudyRecords:
    """What ``Store`` reads and writes about re-training studies (uses its ``_conn`` and ``_tx``)."""

    def record_rungs(self, decisions: Sequence) -> None:
        """Record early stopping's decisions (``search.loop.fidelity.RungDecision``s); one per child and rung."""
        if not decisions:
            return
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO rungs (candidate, rung, step, score, go_on, at) VALUES "
                           "(?, ?, ?, ?, ?, ?)", [(int(d.key), d.rung, d.step, d.score, int(d.go_on), time.time())
                                                  for d in decisions])

    def rungs(self) -> list[dict]:
        """Every recorded rung decision in the order they were taken: ``candidate, rung, step, score, go_on``."""
        if not self._has_table("rungs"):
            return []
        return [dict(r) | {"go_on": bool(r["go_on"])} for r in self._conn.execute(
            "SELECT candidate, rung, step, score, go_on FROM rungs ORDER BY at, rowid")]

    def child_steps(self) -> dict:
        """What the children trained: ``children`` (trained), ``steps`` (their steps, summed) and ``stopped`` (rung ->
        children stopped there)."""
        row = self._conn.execute(
            "SELECT COUNT(*) AS n, COALESCE(SUM(json_extract(metrics, '$.steps')), 0) AS steps FROM candidates "
            f"WHERE status IN ({','.join('?' * len(CHILD_STATUSES))})", CHILD_STATUSES).fetchone()
        stopped = {int(r["rung"]): r["n"] for r in self._conn.execute(
            "SELECT json_extract(metrics, '$.rung') AS rung, COUNT(*) AS n FROM candidates WHERE status = 'stopped' "
            "GROUP BY rung ORDER BY rung") if r["rung"] is not None}
        return {"children": row["n"], "steps": int(row["steps"]), "stopped": stopped}

    def child_kernels(self) -> dict[str, int]:
        """Kernel -> how many of the search's children ran their candidate with it (eager, compiled, native; a child
        that recorded none is not counted)."""
        return {r["kernel"]: r["n"] for r in self._conn.execute(
            "SELECT json_extract(metrics, '$.kernel') AS kernel, COUNT(*) AS n FROM candidates "
            f"WHERE status IN ({','.join('?' * len(CHILD_STATUSES))}) GROUP BY kernel ORDER BY n DESC",
            CHILD_STATUSES) if r["kernel"] is not None}

    def course(self, first: int = 0) -> list[tuple[int, str, float | None, float | None]]:
        """``(index, status, reward, finished_at)`` of every candidate from index ``first``, in index order: the
        search's course in one small query (the dashboard polls it from where it left off)."""
        return [tuple(r) for r in self._conn.execute(
            "SELECT idx, status, reward, finished_at FROM candidates WHERE idx >= ? ORDER BY idx", (first,))]

    def _has_table(self, name: str) -> bool:
        # a reader of a store written before schema 2 sees no significance tables: it has no significance data
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                  (name,)).fetchone() is not None

    def record_study(self, key: str, child: dict, overrides: Sequence[str]) -> bool:
        """Register the child settings ``child`` (a plain dict) under ``key``, with the ``--set`` overrides that
        made them from the run's. Returns True when new, False when ``key`` was already registered."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO studies (key, child, overrides, created_at) VALUES (?, ?, ?, ?)",
                             (key, json.dumps(child, sort_keys=True), json.dumps(list(overrides)), time.time()))
            return cur.rowcount == 1

    def studies(self) -> list[dict]:
        """Every study in creation order: ``key``, ``child`` (dict), ``overrides`` (list), ``created_at``."""
        if not self._has_table("studies"):
            return []
        out = []
        for row in self._conn.execute("SELECT * FROM studies ORDER BY created_at, key"):
            item = dict(row)
            item["child"], item["overrides"] = json.loads(item["child"]), json.loads(item["overrides"])
            out.append(item)
        return out

    def record_retraining(self, study: str, activation: str, seed_number: int, seed: int, status: str,
                          score: float, metrics: dict, node: str | None = None, at: float | None = None) -> None:
        """Record one finished re-training of ``activation`` with seed number ``seed_number`` (child seed ``seed``)
        in ``study``. Raises ``StoreError`` when that re-training is already recorded (it never runs twice)."""
        if status not in CHILD_STATUSES:
            raise ValueError(f"status must be one of {', '.join(CHILD_STATUSES)}, got {status!r}")
        if not math.isfinite(score):
            raise ValueError(f"score of {activation!r} seed {seed_number} is {score}; scores must be finite")
        accuracy = metrics.get("accuracy") if status == "ok" else None
        try:
            with self._tx() as db:
                db.execute("INSERT INTO retrainings (study, activation, seed_number, seed, status, score, accuracy, "
                           "metrics, node, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (study, activation, int(seed_number), int(seed), status, float(score), accuracy,
                            json.dumps(metrics, default=str), node, time.time() if at is None else at))
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"re-training of {activation!r} with seed number {seed_number} in study {study} is "
                             f"already recorded (or the study is unknown): {exc}") from None

    def studies_version(self) -> tuple[int, int]:
        """``(re-trainings recorded over every study, the latest analysis's id)``: it changes whenever a study records
        something (studies write no journal event, so ``last_event_seq`` does not see them)."""
        if not self._has_table("retrainings"):
            return 0, 0
        return (self._conn.execute("SELECT COUNT(*) FROM retrainings").fetchone()[0],
                self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM significance").fetchone()[0])

    def retrainings(self, study: str | None = None, activations: Sequence[str] | None = None) -> list[dict]:
        """Recorded re-trainings (of ``study`` and ``activations`` when given), ordered by study, activation and seed
        number; each with ``metrics`` as a dict."""
        if not self._has_table("retrainings"):
            return []
        sql, args = "SELECT * FROM retrainings WHERE 1", []
        if study is not None:
            sql += " AND study = ?"
            args.append(study)
        if activations is not None:
            sql += f" AND activation IN ({','.join('?' * len(activations))})"
            args += list(activations)
        out = []
        for row in self._conn.execute(sql + " ORDER BY study, activation, seed_number", args):
            item = dict(row)
            item["metrics"] = json.loads(item["metrics"])
            out.append(item)
        return out

    def record_significance(self, study: str, candidates: Sequence[str], baselines: Sequence[str], seeds: int,
                            comparisons: Sequence[dict], wins: dict, confirmation: bool = False) -> int:
        """Store one analysis of ``study``: ``comparisons`` (``Comparison.to_dict()`` records) and ``wins`` (a
        ``WinsTable.to_dict()``) over seed numbers 0..seeds-1. Returns its id. ``confirmation``: the run's
        ``confirm:`` stage made it, so it stays the study's current analysis (``significance``)."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO significance (study, candidates, baselines, seeds, comparisons, wins, at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (study, json.dumps(list(candidates)), json.dumps(list(baselines)), int(seeds),
                              json.dumps(list(comparisons)), json.dumps(wins), time.time()))
            if confirmation:
                row = db.execute("SELECT value FROM meta WHERE key=?", (CONFIRMATION_META,)).fetchone()
                ids = {**(json.loads(row[0]) if row else {}), study: cur.lastrowid}
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (CONFIRMATION_META, json.dumps(ids)))
            return cur.lastrowid

    def analyses_after(self, analysis_id: int) -> int:
        """How many analyses of the same study were stored after analysis ``analysis_id`` (later tests that do not
        replace the run's confirmation as its current one: ``significance``)."""
        if not self._has_table("significance"):
            return 0
        sql = "SELECT COUNT(*) FROM significance WHERE id > ? AND study = (SELECT study FROM significance WHERE id = ?)"
        return self._conn.execute(sql, (analysis_id, analysis_id)).fetchone()[0]

    def significance(self) -> list[dict]:
        """The current analysis of each study, oldest study first: ``id, study, candidates, baselines, seeds,
        comparisons, wins, at`` plus the study's ``child`` and ``overrides``, and ``confirmation`` (the analysis is the
        run's ``confirm:`` stage's). Current is the run's confirmation's
        analysis where it made one (a later ``actsearch significance`` of the same study, say against other baselines
        or with one seed, prints its own verdicts but does not replace the run's answer), else the latest."""
        if not self._has_table("significance"):
            return []
        confirmed = self.get_meta(CONFIRMATION_META, {}) or {}
        rows = self._conn.execute(
            "SELECT s.*, t.child, t.overrides, t.created_at FROM significance s JOIN studies t ON t.key = s.study "
            "ORDER BY t.created_at, s.study, s.id")
        current: dict[str, sqlite3.Row] = {}
        for row in rows:
            if current.get(row["study"]) is None or current[row["study"]]["id"] != confirmed.get(row["study"]):
                current[row["study"]] = row  # the latest, unless the confirmation's is already there
        out = []
        for row in current.values():
            item = dict(row)
            for key in ("candidates", "baselines", "comparisons", "wins", "child", "overrides"):
                item[key] = json.loads(item[key])
            item["confirmation"] = confirmed.get(row["study"]) == row["id"]  # the run's own answer
            out.append(item)
        return out
