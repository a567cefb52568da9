"""Migrate a shipped table to this actsearch's fingerprint version (search.language.identity.FINGERPRINT_VERSION).

    .venv/bin/python benchmarks/migrate_table_fingerprints.py tables/mnist1d-150.json [--dry-run]

A row's text defines its function, so every row's fingerprint is recomputed from its text (as evaluator.table_file checks
it). A table of a space (``kind: space``) must also hold every function of the space that passes the screen: when the
new identity splits a former function, the parts that have no row are trained here exactly as ``actsearch table
build`` trains a child (seed k of the table is an exhaustive run with run seed ``seeds[k]``; the child seed is
``child_seed(run seed, index)``, ``index`` the function's proposal index in an exhaustive run of the space under the
new identity) and added. Rows stay in write_table's order and layout, in the file's own format version. The header gets the new version and a ``migrated`` line
saying what was done. Refuses a table whose functions the new identity merges (two rows, one fingerprint).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from evaluator.activations import BASELINE_TEXTS
from evaluator.settings import ChildSettings
from evaluator.train import train_child
from search.analysis.table_build import _finish, _ordered
from search.language.files import atomic_write
from search.language.identity import FINGERPRINT_VERSION
from search.language.index import FunctionIndex
from search.language.simplify import fingerprint_of
from search.language.space import Space
from search.loop.config import child_seed


def migrate(path: Path, dry_run: bool = False) -> str:
    data = json.loads(path.read_text())
    header, rows = data["header"], [dict(zip(data["columns"], values)) for values in data["rows"]]
    old_version = header["fingerprint_version"]
    changed, owners = 0, {}
    for row in rows:
        new = fingerprint_of(BASELINE_TEXTS.get(row["text"].strip().lower(), row["text"]))
        changed += new != row["fingerprint"]
        row["fingerprint"] = new
        if new is not None and owners.setdefault(new, row["text"]) != row["text"]:
            raise SystemExit(f"{path}: {owners[new]!r} and {row['text']!r} now share fingerprint {new}: merged")
    added = []
    if header["kind"] == "space":
        space = Space(header["space"]["core_units"], tuple(header["space"]["unary"]), tuple(header["space"]["binary"]))
        index = FunctionIndex.of(space)
        settings = ChildSettings(**header["child"])
        functions = index.functions()
        for position, (fp, group) in enumerate(functions.items()):  # position: the proposal index of an exhaustive run
            if fp in owners or not index.verdict(group[0], reject_linear=True).ok:
                continue
            text = index.expression(group[0]).text
            seeds = [child_seed(run_seed, position) for run_seed in header["seeds"]]
            row = {"text": text, "fingerprint": fp, "tokens": " ".join(group[0]), "accuracy": [], "status": [],
                   "wall": [], "curve": None}
            for seed in seeds:
                result = (None if dry_run else train_child(settings, text, seed))
                row["status"].append("missing" if result is None else result.status)
                row["accuracy"].append(result.accuracy if result is not None and result.status == "ok" else None)
                row["wall"].append(None if result is None else result.wall_s)
            print(f"added {text} (proposal index {position}, child seeds {seeds}): {row['status']} "
                  f"{row['accuracy']}", file=sys.stderr)
            added.append((text, position, seeds))
            known = [index.expression(t).text for t in group]
            rows.append(_finish(row, header["failed_reward"], known))
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    note = (f"{today}: fingerprints recomputed from each row's text for version {FINGERPRINT_VERSION} (was "
            f"{old_version}; {changed} of {len(rows) - len(added)} changed, none merged) by "
            f"benchmarks/migrate_table_fingerprints.py")
    if header["kind"] == "space":
        note += ("; " + ", ".join(f"{t} (index {i}, child seeds {s})" for t, i, s in added) +
                 " were split from other functions by the new identity and trained as the table build trains a "
                 f"child (run seeds {header['seeds']}, child_seed(run seed, index))" if added
                 else "; the new identity splits no function of the space: no row added")
    header["fingerprint_version"] = FINGERPRINT_VERSION
    header["migrated"] = note
    if not dry_run:  # write_table's layout, in the file's own format version and columns (nothing else changes)
        body = ",\n".join(json.dumps([r[c] for c in data["columns"]], separators=(",", ":")) for r in _ordered(rows))
        atomic_write(path, f'{{"format": "{data["format"]}", "version": {data["version"]},\n"header": '
                           f'{json.dumps(header, sort_keys=True)},\n"columns": {json.dumps(data["columns"])},\n'
                           f'"rows": [\n{body}\n]}}\n')
    return note


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="say what would change; train and write nothing")
    args = parser.parse_args(argv)
    print(migrate(args.table, args.dry_run))


if __name__ == "__main__":
    main()
