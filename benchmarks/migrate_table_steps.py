"""Give a table built before format 3 its ``steps`` column (the child steps each seed trained) from the runs it was
built from, without training anything.

    .venv/bin/python benchmarks/migrate_table_steps.py tables/mnist1d-150.json [--dry-run]

A replay of a table without the column charges every child ``child.steps``, also a child that diverged at step 3:
the real search counts the steps it trained. The run stores named in the header (``runs``; a table of functions: its
``study``) still hold each child's record; every row's status and accuracy per seed must be the stores' exactly, or
the migration refuses (the table would not be the runs' any more). The header keeps its provenance and gets a
``migrated`` line saying what was done.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluator.table_file import COLUMNS, VERSION, load_table, write_table  # noqa: E402
from search.analysis.table_build import _round, _steps  # noqa: E402
from search.loop.store import CHILD_STATUSES, Store  # noqa: E402


def recorded_children(header: dict, rows: list[dict], base: Path) -> dict[tuple[str, int], tuple[str, float, dict]]:
    """(fingerprint or label, seed number) -> (status, accuracy, metrics) of the child the table took from its runs."""
    out = {}
    if header["kind"] == "space":
        for k, run in enumerate(header["runs"]):
            with Store.open(base / run, readonly=True) as store:
                for c in store.candidates(CHILD_STATUSES):
                    key = (c["fingerprint"], k)
                    if key not in out:  # a function trained twice in one run: the table took its first child
                        metrics = c["metrics"] or {}
                        out[key] = (c["status"], metrics.get("accuracy"), metrics)
    else:
        with Store.open(base / header["runs"][0], readonly=True) as store:
            for r in store.retrainings(header["study"], [row["text"] for row in rows]):
                out[(r["activation"], r["seed_number"])] = (r["status"], r["accuracy"], r["metrics"])
    return out


def migrate(path: Path, dry_run: bool = False) -> str:
    table = load_table(path)
    header = dict(table.header)
    rows = [{c: row[c] for c in COLUMNS if c != "status"} | {"status": row["statuses"]} for row in table.rows]
    children = recorded_children(header, rows, REPO)
    full = header["child"]["steps"]
    filled = collections.Counter()
    for row in rows:
        key = row["fingerprint"] if header["kind"] == "space" else row["text"]
        steps = []
        for k, status in enumerate(row["status"]):
            if status == "missing":
                steps.append(None)
                continue
            found = children.get((key, k))
            if found is None:
                raise SystemExit(f"{path}: {row['text']!r} seed {k}: no child in the runs; not migrated")
            stored_status, accuracy, metrics = found
            if stored_status != status or (status == "ok" and _round(accuracy) != row["accuracy"][k]):
                raise SystemExit(f"{path}: {row['text']!r} seed {k}: the table says {status} "
                                 f"{row['accuracy'][k]}, the run {stored_status} {accuracy}; not migrated")
            steps.append(_steps(metrics))
            filled[status, steps[-1] == full] += 1
        row["steps"] = steps
    early = {s: n for (s, whole), n in filled.items() if not whole}
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    note = (f"{today}: steps column (format {VERSION}) filled from the build's run stores by "
            f"benchmarks/migrate_table_steps.py; {sum(filled.values())} children, of which ended before step {full}: "
            + (", ".join(f"{n} {s}" for s, n in sorted(early.items())) or "none")
            + "; nothing else changed")
    header["migrated"] = "; ".join(x for x in (header.get("migrated"), note) if x)
    if not dry_run:
        write_table(path, header, rows)
    return note


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="say what would be filled; write nothing")
    args = parser.parse_args(argv)
    print(migrate(args.table, args.dry_run))


if __name__ == "__main__":
    main()
