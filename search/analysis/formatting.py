"""Tables of candidates for people and programs: aligned text, markdown, CSV or JSON.

``top_table(rows, fmt)`` formats the rows of ``Store.top(k)``; ``format_rows`` is the generic formatter behind it.
``display_text`` is how every display (tables, the report, plot titles) shows a candidate's function.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from evaluator.activations import display_parts, display_text, joined  # noqa: F401  (displays import them from here)
from search.analysis.stats import format_p
from search.language.simplify import fingerprint_of

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


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.4f}"


# ---------------------------------------------------------------- how a candidate's function is shown

def with_display(rows: Sequence[dict], equivalents: Mapping[str, Sequence[str]] | None = None) -> list[dict]:
    """``rows`` (with ``text`` and ``fingerprint``) with ``simplest``, ``equals`` and ``display`` added.
    equivalents: fingerprint -> the texts a run recorded that function under (``Store.texts_by_fingerprint``)."""
    out = []
    for r in rows:
        simplest, equals = display_parts(r["text"], (equivalents or {}).get(r.get("fingerprint"), ()))
        out.append(dict(r, simplest=simplest, equals=equals, display=joined(simplest, equals)))
    return out


# ---------------------------------------------------------------- tables

# Every column a table of candidates can show, by row key; tables pick theirs by key.
CANDIDATE_COLUMNS = {c.key: c for c in (
    Column("rank", "rank", _plain, right=True),
    Column("reward", "reward", _number(4), right=True),
    Column("mean", "mean", _number(4), right=True),
    Column("sd", "sd", _number(4), right=True),
    Column("evaluations", "evals", _plain, right=True),
    Column("statuses", "statuses", _plain),
    Column("status", "status", _plain),
    Column("text", "expression", _plain),
    Column("display", "expression", _plain),  # the simplest text and its baseline (with_display)
    Column("simplest", "simplest", _plain),
    Column("equals", "equals", _plain),
    Column("proposed", "proposed", _plain, right=True),
    Column("index", "candidate", _plain, right=True),
    Column("wall_s", "train s", _number(1), right=True),
    Column("verdicts", "significance", _plain),
)}


def candidate_columns(*keys: str) -> tuple[Column, ...]:
    return tuple(CANDIDATE_COLUMNS[k] for k in keys)


def shown_columns(columns: Sequence[Column], fmt: str) -> tuple[Column, ...]:
    """``columns`` as ``fmt`` shows a candidate (rows from ``with_display``): table and markdown show ``display`` in
    place of ``text``; csv keeps the canonical ``text`` and adds ``simplest`` and ``equals`` after it."""
    out = []
    for c in columns:
        if c.key != "text" or fmt == "json":
            out.append(c)
        elif fmt == "csv":
            out += [c, CANDIDATE_COLUMNS["simplest"], CANDIDATE_COLUMNS["equals"]]
        else:
            out.append(CANDIDATE_COLUMNS["display"])
    return tuple(out)


# The table a search ends with: one child per row, as the store holds it.
TOP_COLUMNS = candidate_columns("rank", "reward", "status", "text", "proposed", "index", "wall_s")


def shows_metric(rewards: Any) -> bool:
    """Whether tables show the reward as a named metric (a user-defined child's, or one minimised) rather than as the
    built-in tasks' accuracy-valued ``reward``."""
    return rewards is not None and (rewards.minimize or rewards.metric != "accuracy")


def score_columns(columns: Sequence[Column], rewards: Any) -> tuple[Column, ...]:
    """``columns`` with ``reward`` and ``mean`` headed by ``rewards.metric`` when the table shows the metric (their
    values then come from ``metric_rows``)."""
    if not shows_metric(rewards):
        return tuple(columns)
    names = {"reward": rewards.metric, "mean": f"mean {rewards.metric}"}
    return tuple(Column(c.key, names[c.key], c.show, c.right) if c.key in names else c for c in columns)


def metric_rows(rows: Sequence[dict], rewards: Any, keys: Sequence[str] = ("reward", "mean")) -> list[dict]:
    """``rows`` with the reward-valued ``keys`` turned back into the metric (``rewards.metric_of``: minus the reward
    when minimising) and ``metric`` / ``lower_is_better`` added; a child that is not "ok" shows no metric (its
    reward is the penalty, not a measurement). Unchanged when the table shows plain rewards."""
    if not shows_metric(rewards):
        return [dict(r) for r in rows]
    out = []
    for r in rows:
        r = dict(r, metric=rewards.metric, lower_is_better=rewards.minimize)
        for key in keys:
            if key in r:
                r[key] = (None if key == "reward" and r.get("status", "ok") != "ok"
                          else rewards.metric_of(r[key]))
        out.append(r)
    return out


def top_table(rows: Sequence[dict], fmt: str = "table", rewards: Any = None,
              equivalents: Mapping[str, Sequence[str]] | None = None) -> str:
    """The top candidates (rows of ``Store.top``) as ``fmt`` (table | markdown | csv | json). rewards: the run's
    ``RewardSettings``: with a named or minimised metric the reward column shows that metric (ranked best first
    either way). Candidates show as ``display_text`` (equivalents: see ``with_display``)."""
    rows = [dict(r, wall_s=(r.get("metrics") or {}).get("wall_s"))
            for r in with_display(metric_rows(rows, rewards, ("reward",)), equivalents)]
    if fmt == "json":
        keep = ("rank", "reward", "accuracy", "status", "text", "simplest", "equals", "fingerprint", "tokens",
                "proposed", "index", "seed", "node", "policy_version", "metrics") + (
                    ("metric", "lower_is_better") if shows_metric(rewards) else ())
        return json.dumps([{k: (list(r[k]) if isinstance(r.get(k), tuple) else r.get(k)) for k in keep}
                           for r in rows], indent=2)
    return format_rows(rows, shown_columns(score_columns(TOP_COLUMNS, rewards), fmt), fmt)


# A significance study's comparisons, one row each (``comparison_rows``): the text tables and the report's HTML.
def function_label(label: str) -> str:
    """A candidate or baseline label as displays write it (a baseline's name stays as it is)."""
    return label if fingerprint_of(label) is None else display_text(label)


def simplest_label(label: str) -> str:
    """A candidate or baseline label's simplest text alone, as ``top``'s csv and json give it (a name stays)."""
    return label if fingerprint_of(label) is None else display_parts(label)[0]


SIGNIFICANCE_COLUMNS = (
    Column("candidate", "candidate", function_label),
    Column("baseline", "baseline", function_label),
    Column("n", "seeds", _plain, right=True),
    Column("candidate_mean", "cand. mean", _number(4), right=True),
    Column("baseline_mean", "base. mean", _number(4), right=True),
    Column("mean_diff", "mean diff", _signed, right=True),
    Column("ci", "95% CI", _plain, right=True),
    Column("wilcoxon_p", "Wilcoxon p", format_p, right=True),
    Column("wilcoxon_p_holm", "Holm p", format_p, right=True),
    Column("sign_p", "sign p", format_p, right=True),
    Column("wtl", "w/t/l", _plain, right=True),
    Column("verdict", "verdict"),
)


# csv and json keep the canonical texts and add each one's simplest text after it, as top's do
SIGNIFICANCE_DATA_COLUMNS = (SIGNIFICANCE_COLUMNS[0], Column("candidate_simplest", "candidate simplest", _plain),
                             SIGNIFICANCE_COLUMNS[1], Column("baseline_simplest", "baseline simplest", _plain),
                             *SIGNIFICANCE_COLUMNS[2:])


def comparison_rows(comparisons: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Comparison records (``Comparison.to_dict()``) with the shown ``ci`` (``[low, high]`` of the mean difference),
    ``wtl`` (wins/ties/losses) and both functions' simplest texts added, as ``SIGNIFICANCE_COLUMNS`` show them."""
    return [dict(c, ci=f"[{_signed(c['ci_low'])}, {_signed(c['ci_high'])}]" if c.get("ci_low") is not None else "-",
                 wtl=f"{c.get('wins', 0)}/{c.get('ties', 0)}/{c.get('losses', 0)}",
                 candidate_simplest=simplest_label(c["candidate"]), baseline_simplest=simplest_label(c["baseline"]))
            for c in comparisons]


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
