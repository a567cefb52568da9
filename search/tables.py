"""Tables of candidates for people and programs: aligned text, markdown, CSV or JSON.

``top_table(rows, fmt)`` formats the rows of ``Store.top(k)``; ``format_rows`` is the generic formatter behind it.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

FORMATS = ("table", "markdown", "csv", "json")


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header, how a value prints, and whether it is right-aligned."""

    key: str
    header: str
    show: Callable[[Any], str] = str
    right: bool = False


def _number(digits: int) -> Callable[[Any], str]:
    return lambda v: "-" if v is None else f"{v:.{digits}f}"


def _plain(v: Any) -> str:
    return "-" if v is None else str(v)


TOP_COLUMNS = (
    Column("rank", "rank", _plain, right=True),
    Column("reward", "reward", _number(4), right=True),
    Column("status", "status", _plain),
    Column("text", "expression", _plain),
    Column("proposed", "proposed", _plain, right=True),
    Column("index", "candidate", _plain, right=True),
    Column("wall_s", "train s", _number(1), right=True),
)


def top_table(rows: Sequence[dict], fmt: str = "table") -> str:
    """The top candidates (rows of ``Store.top``) as ``fmt`` (table | markdown | csv | json)."""
    rows = [dict(r, wall_s=(r.get("metrics") or {}).get("wall_s")) for r in rows]
    if fmt == "json":
        keep = ("rank", "reward", "accuracy", "status", "text", "fingerprint", "tokens", "proposed", "index",
                "seed", "node", "policy_version", "metrics")
        return json.dumps([{k: (list(r[k]) if isinstance(r.get(k), tuple) else r.get(k)) for k in keep}
                           for r in rows], indent=2)
    return format_rows(rows, TOP_COLUMNS, fmt)


def format_rows(rows: Sequence[dict], columns: Sequence[Column], fmt: str = "table") -> str:
    """``rows`` as ``fmt``: aligned text (``table``), a markdown pipe table, CSV (raw values) or a JSON list."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "json":
        return json.dumps([{c.key: r.get(c.key) for c in columns} for r in rows], indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([c.header for c in columns])
        for r in rows:
            writer.writerow(["" if r.get(c.key) is None else r.get(c.key) for c in columns])
        return buf.getvalue().rstrip("\n")
    cells = [[c.show(r.get(c.key)) for c in columns] for r in rows]
    if fmt == "markdown":
        def line(values):
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
        rule = "|" + "|".join("---:" if c.right else "---" for c in columns) + "|"
        return "\n".join([line([c.header for c in columns]), rule, *(line(row) for row in cells)])
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def aligned(values):
        return "  ".join(v.rjust(w) if c.right else v.ljust(w) for v, w, c in zip(values, widths, columns)).rstrip()
    return "\n".join([aligned([c.header for c in columns]), aligned(["-" * w for w in widths]),
                      *(aligned(row) for row in cells)])
