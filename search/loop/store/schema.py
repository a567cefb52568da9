"""The run store's schema: the statuses a candidate passes through, the DDL of every version (``MIGRATIONS``), and the
connection that reports a damaged file in one line.

Adding tables later: append a list of DDL statements to ``MIGRATIONS``; ``SCHEMA_VERSION`` follows, existing run
files are upgraded when a writer opens them, and the new data gets its methods in the store.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from search.language.errors import UserError

# A child was trained (counts against the budget): "stopped" is one early stopping ended at a rung.
CHILD_STATUSES = ("ok", "diverged", "failed", "timeout", "stopped")
FREE_STATUSES = ("screened", "duplicate")  # a reward without a child
FINAL_STATUSES = CHILD_STATUSES + FREE_STATUSES
OPEN_STATUSES = ("proposed", "pending", "running")  # no reward yet
# a session's outcomes that end the search (budget spent, space exhausted, proposals run dry, nothing left to do);
# the others (interrupted, error, or none: a killed driver) leave it to be resumed
SEARCH_ENDED = ("finished", "exhausted", "stalled", "complete")

# Version 1: the tables above. Each later entry is the DDL that upgrades the previous version by one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE candidates (
            idx INTEGER PRIMARY KEY,
            tokens TEXT NOT NULL,
            text TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            logp REAL,
            policy_version INTEGER NOT NULL,
            proposal TEXT NOT NULL,
            status TEXT NOT NULL,
            reward REAL,
            accuracy REAL,
            metrics TEXT,
            reason TEXT,
            duplicate_of INTEGER REFERENCES candidates(idx),
            seed INTEGER,
            node TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            proposed_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            CHECK ((status IN ('proposed', 'pending', 'running')) = (reward IS NULL))
        )""",
        "CREATE INDEX candidates_fingerprint ON candidates(fingerprint)",
        "CREATE INDEX candidates_status ON candidates(status)",
        "CREATE INDEX candidates_reward ON candidates(reward)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell')),
            n INTEGER,
            first_index INTEGER,
            count INTEGER,
            candidate INTEGER REFERENCES candidates(idx),
            at REAL NOT NULL
        )""",
        "CREATE UNIQUE INDEX events_one_tell ON events(candidate) WHERE kind = 'tell'",
        """CREATE TABLE updates (
            version INTEGER PRIMARY KEY,
            event_seq INTEGER NOT NULL REFERENCES events(seq),
            stats TEXT NOT NULL,
            at REAL NOT NULL
        )""",
        """CREATE TABLE consumed (
            candidate INTEGER PRIMARY KEY REFERENCES candidates(idx),
            version INTEGER NOT NULL REFERENCES updates(version)
        )""",
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT,
            host TEXT,
            pid INTEGER,
            driver_cpu_s REAL,
            info TEXT
        )""",
    ],
    # Version 2: significance re-trainings and their analyses.
    [
        """CREATE TABLE studies (
            key TEXT PRIMARY KEY,
            child TEXT NOT NULL,
            overrides TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE retrainings (
            study TEXT NOT NULL REFERENCES studies(key),
            activation TEXT NOT NULL,
            seed_number INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'diverged', 'failed', 'timeout')),
            score REAL NOT NULL,
            accuracy REAL,
            metrics TEXT NOT NULL,
            node TEXT,
            finished_at REAL NOT NULL,
            PRIMARY KEY (study, activation, seed_number)
        )""",
        """CREATE TABLE significance (
            id INTEGER PRIMARY KEY,
            study TEXT NOT NULL REFERENCES studies(key),
            candidates TEXT NOT NULL,
            baselines TEXT NOT NULL,
            seeds INTEGER NOT NULL,
            comparisons TEXT NOT NULL,
            wins TEXT NOT NULL,
            at REAL NOT NULL
        )""",
    ],
    # Version 3: early stopping's decisions, one per child and rung it reached.
    [
        """CREATE TABLE rungs (
            candidate INTEGER NOT NULL REFERENCES candidates(idx),
            rung INTEGER NOT NULL,
            step INTEGER NOT NULL,
            score REAL NOT NULL,
            go_on INTEGER NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (candidate, rung)
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

STORE_FILE = "store.sqlite"


class StoreError(UserError):
    """The store is damaged, or contradicts itself or the caller (e.g. a second reward for one candidate)."""


class _Connection(sqlite3.Connection):
    """A connection whose failures to read or write the file come out as one-line ``StoreError``s naming it."""

    path: Path

    def execute(self, *args, **kwargs):
        return self._plainly(super().execute, *args, **kwargs)

    def executemany(self, *args, **kwargs):
        return self._plainly(super().executemany, *args, **kwargs)

    def _plainly(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except sqlite3.IntegrityError:  # a rule of the schema: the store's own methods turn these into StoreErrors
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: the run store cannot be read or written ({exc})") from None
