"""One self-contained HTML page about a run: the answer first (the best function, its verdicts against the baselines,
the significance picture), then the search's course, the top candidates, their shapes, the tables, per child, config.

Everything is inline (CSS in a <style> block, images as base64 data URIs): the file can be mailed, archived or opened
offline and looks the same. Inputs are plain data so the page can be built from a run store or from anything else.
"""
from __future__ import annotations

import base64
import html
import importlib.metadata
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from search.analysis.formatting import SIGNIFICANCE_COLUMNS, comparison_rows, display_text
from search.analysis.stats import ALPHA, TIE_DECIMALS, WinsTable, format_p
from search.language.errors import UserError
from search.language.files import atomic_write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DASH = "\u2013"  # shown for a missing value

CSS = """
:root { --ink: #1d2329; --muted: #5f6b76; --line: #dde2e7; --band: #f5f7f9; --accent: #1f5fa8;
        --good: #1e7b45; --good-bg: #e3f4ea; --bad: #b3261e; --bad-bg: #fbe5e3; --none-bg: #eceff2; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 28px 48px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.note, .muted { color: var(--muted); font-size: 13.5px; }
code, pre, td.expr { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
code { font-size: 13px; background: var(--band); padding: 1px 4px; border-radius: 3px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; margin: 16px 0 4px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; background: var(--band); }
.card .k { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.card .v { font-size: 17px; font-weight: 600; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; white-space: nowrap; border-bottom: 2px solid var(--line); }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.expr { font-size: 13px; overflow-wrap: break-word; }
table.sig { font-size: 12.5px; }
table.sig th, table.sig td { padding: 5px 7px; }
table.sig th { white-space: normal; vertical-align: bottom; }
table.sig td.cand { min-width: 11em; max-width: 18em; background: #fff !important;
                    border-right: 1px solid var(--line); }
table.sig tbody tr.group td { border-top: 2px solid var(--line); }
table.sig tbody tr:nth-child(even) td { background: none; }
table.compact { width: auto; min-width: 50%; }
table.compact th.num, table.compact td.num { min-width: 7em; }
figure { margin: 8px 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.math { font-family: "STIX Two Math", "Cambria Math", Georgia, serif; font-size: 1.1em; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12.5px; font-weight: 600;
         white-space: nowrap; }
.badge.better { color: var(--good); background: var(--good-bg); }
.badge.worse { color: var(--bad); background: var(--bad-bg); }
.badge.none { color: var(--muted); background: var(--none-bg); }
pre { background: var(--band); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px;
      font-size: 12.5px; overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""


# ---------------------------------------------------------------- formatting

def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _cell(v: Any) -> str:
    """Plain text of a table value: floats to 4 decimals, None as a dash, containers as JSON."""
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return str(v)


def _badge(verdict: str) -> str:
    kind = {"better": "better", "worse": "worse"}.get(verdict, "none")
    return f'<span class="badge {kind}">{_e(verdict)}</span>'


def _image(png: bytes, alt: str, caption: str) -> str:
    if not isinstance(png, (bytes, bytearray)) or not bytes(png).startswith(PNG_SIGNATURE):
        raise ValueError(f"{alt}: expected PNG bytes")
    data = base64.b64encode(bytes(png)).decode("ascii")
    return (f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


# ---------------------------------------------------------------- sections

def _summary(summary: Mapping[str, Any]) -> str:
    cards = "".join(f'<div class="card"><div class="k">{_e(_label(k))}</div><div class="v">{_e(_cell(v))}</div></div>'
                    for k, v in summary.items())
    return f'<div class="cards">{cards}</div>' if cards else ""


_EXPRESSION_KEYS = {"text", "expression", "activation", "candidate"}
_SHOWN_KEYS = {"text", "expression"}  # columns of candidate texts, shown as ``show`` says


def _table(rows: Sequence[Mapping[str, Any]], empty: str, show: Callable[[str], str] = str) -> str:
    """A table of dict rows: columns are the keys in first-seen order; numbers right-aligned; the text of an
    ``expression`` / ``text`` column as ``show`` gives it."""
    if not rows:
        return f'<p class="note">{_e(empty)}</p>'
    columns: list[str] = list(dict.fromkeys(k for row in rows for k in row))
    numeric = {c: all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                      for r in rows if r.get(c) is not None) for c in columns}
    head = "".join(f'<th class="{"num" if numeric[c] else ""}">{_e(_label(c))}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            cls = "num" if numeric[c] else "expr" if c in _EXPRESSION_KEYS else ""
            value = row.get(c)
            value = show(value) if c in _SHOWN_KEYS and isinstance(value, str) else value
            cells.append(f'<td class="{cls}">{_e(_cell(value))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _significance(rows: Sequence[Mapping[str, Any]], show: Callable[[str], str] = str) -> str:
    """The comparisons as ``SIGNIFICANCE_COLUMNS`` define them (the command's text table), one block of rows per
    candidate with its name shown once, the verdict as a badge and a Holm p below alpha in bold."""
    alpha = rows[0].get("alpha", ALPHA) if rows else ALPHA
    head = "<tr>" + "".join(f"<th class='{'num' if c.right else ''}'>{_e(c.header)}</th>"
                            for c in SIGNIFICANCE_COLUMNS) + "</tr>"
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in comparison_rows(rows):
        groups.setdefault(str(r["candidate"]), []).append(r)
    body = []
    for candidate, group in groups.items():
        for i, r in enumerate(group):
            cells = []
            for c in SIGNIFICANCE_COLUMNS:
                value = r.get(c.key)
                text = _e(DASH if value is None else c.show(value))
                if c.key == "candidate":
                    if i == 0:
                        cells.append(f"<td class='expr cand' rowspan='{len(group)}'>{_e(show(candidate))}</td>")
                    continue
                if c.key == "verdict":
                    text = _badge(str(value or "no evidence"))
                elif c.key == "wilcoxon_p_holm" and value is not None and value < alpha:
                    text = f"<b>{text}</b>"
                cells.append(f"<td class='{'num' if c.right else 'expr' if c.key == 'baseline' else ''}'>{text}</td>")
            body.append(f"<tr class='{'group' if i == 0 else ''}'>{''.join(cells)}</tr>")
    note = (f"Runs are paired by seed (same initialisation and data order); differences are candidate minus baseline, "
            f"rounded to 1e-{TIE_DECIMALS} so that equal gains tie exactly. The Wilcoxon p is the exact "
            f"two-sided signed-rank test (zero differences dropped, tied |differences| share their midrank). "
            f"<b>better</b> / <b>worse</b>: the two-sided Wilcoxon signed-rank p, Holm-corrected over all {len(rows)} "
            f"comparisons, is below {alpha:g} <i>and</i> the 95% t interval of the mean difference lies on "
            f"that side of zero; otherwise <b>no evidence</b>. The sign test is the paper's one-sided test (candidate "
            f"better), ties dropped, uncorrected. w/t/l: seeds where the candidate won / tied / lost.")
    if rows and rows[0].get("lower_is_better"):
        metric = _e(str(rows[0].get("metric", "the metric")))
        note += (f" Scores are {metric}, <b>lower is better</b>: the means are {metric}, a negative difference means "
                 f"the candidate scored lower (better), and a win is a seed where it did.")
    return (f'<div class="scroll"><table class="sig"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'
            f'<p class="note">{note}</p>')


def _wins(table: WinsTable, show: Callable[[str], str] = str) -> str:
    head = "<tr><th>candidate</th>" + "".join(f"<th class='num'>{_e(b)}</th>" for b in table.baselines) + "</tr>"
    body = []
    for row in table.rows():
        cells = "".join(f"<td class='num'>{_e(row.get(b, DASH))}</td>" for b in table.baselines)
        body.append(f"<tr><td class='expr'>{_e(show(row['candidate']))}</td>{cells}</tr>")
    tie = f" (|difference| \u2264 {table.tol:g} counts as a tie)" if table.tol else ""
    return (f'<div class="scroll"><table class="compact"><thead>{head}</thead><tbody>{"".join(body)}</tbody>'
            f'</table></div><p class="note">Each cell counts {table.unit}s where the candidate is better / equal / '
            f"worse than the baseline{tie}, as in the paper's summary of Swish against its baselines.</p>")


def _signed(v: Any) -> str:
    return DASH if v is None else f"{v:+.4f}"


def _math(text: str) -> str:
    """The function typeset (``x·σ(βx)``: ``search.language.simplify.typeset_html``) after its text, or nothing when
    the text is no expression (a baseline's name)."""
    from search.language.errors import ExpressionError
    from search.language.simplify import typeset_html

    try:
        return f' &nbsp;<span class="math">{typeset_html(text.split("  = ")[0])}</span>'
    except ExpressionError:
        return ""


def _answer(best: Mapping[str, Any]) -> str:
    """The best function's picture and one row per baseline: its verdict, the mean difference and its interval."""
    rows = []
    for c in best.get("comparisons") or []:
        holm = c.get("wilcoxon_p_holm")
        rows.append(f"<tr><td class='expr'>{_e(c['baseline'])}</td><td>{_badge(str(c['verdict']))}</td>"
                    f"<td class='num'>{_e(_signed(c.get('mean_diff')))}</td>"
                    f"<td class='num'>[{_e(_signed(c.get('ci_low')))}, {_e(_signed(c.get('ci_high')))}]</td>"
                    f"<td class='num'>{_e(DASH if holm is None else format_p(holm))}</td>"
                    f"<td class='num'>{c['wins']}/{c['ties']}/{c['losses']}</td><td>{_e(c.get('reason') or '')}</td>"
                    f"</tr>")
    head = ("<tr><th>baseline</th><th>verdict</th><th class='num'>difference</th><th class='num'>95% interval</th>"
            "<th class='num'>Holm p</th><th class='num'>w/t/l</th><th>why no evidence</th></tr>")
    table = (f'<div class="scroll"><table class="compact"><thead>{head}</thead><tbody>{"".join(rows)}</tbody>'
             f'</table></div>') if rows else ""
    return (f"<p><b>Best function: <code>{_e(best['text'])}</code></b>{_math(best['text'])} "
            f"{_e(best.get('note', ''))}</p>"
            + _image(best["png"], "best function", "The best function (solid) and its derivative (dashed) on [-5, 5], "
                                                   "every beta at 1.") + table)


def _per_child(studies: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], show: Callable[[str], str]) -> str:
    """Per child (study): each function's verdict against each baseline; then on how many children each function was
    better than each baseline (the paper's "generalizes to k of n models", with verdicts instead of medians)."""
    from search.analysis.confirm import generalization

    baselines = list(dict.fromkeys(c["baseline"] for _, comps in studies for c in comps))
    head = "<tr><th>child</th><th>function</th>" + "".join(f"<th>{_e(b)}</th>" for b in baselines) + "</tr>"
    body = []
    for label, comps in studies:
        verdicts = {(c["candidate"], c["baseline"]): c["verdict"] for c in comps}
        for candidate in dict.fromkeys(c["candidate"] for c in comps):
            cells = "".join(f"<td>{_badge(verdicts[candidate, b]) if (candidate, b) in verdicts else DASH}</td>"
                            for b in baselines)
            body.append(f"<tr><td>{_e(label)}</td><td class='expr'>{_e(show(candidate))}</td>{cells}</tr>")
    counts = generalization(studies)
    head2 = "<tr><th>function</th>" + "".join(f"<th class='num'>{_e(b)}</th>" for b in baselines) + "</tr>"
    body2 = [f"<tr><td class='expr'>{_e(show(candidate))}</td>" + "".join(
        f"<td class='num'>{'%d of %d' % row[b] if b in row else DASH}</td>" for b in baselines) + "</tr>"
        for candidate, row in counts.items()]
    return (f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'
            f'<p class="note">Better on k of n children, counting the children on which the two were compared:</p>'
            f'<div class="scroll"><table class="compact"><thead>{head2}</thead><tbody>{"".join(body2)}</tbody>'
            f'</table></div><p class="note">Studies scored on the split the search selected its functions on are '
            f"left out: they favour the functions.</p>")


# ---------------------------------------------------------------- the page

def _version() -> str:
    try:
        return importlib.metadata.version("actsearch")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "(source tree)"


def build_report(path: str | os.PathLike, *, title: str, config: Mapping[str, Any], summary: Mapping[str, Any],
                 top_rows: Sequence[Mapping[str, Any]], function_png: bytes, progress_png: bytes,
                 significance: Sequence[Mapping[str, Any]] | None = None,
                 wins_table: WinsTable | Mapping[str, Any] | None = None,
                 significance_png: bytes | None = None, show: Callable[[str], str] = display_text,
                 best: Mapping[str, Any] | None = None,
                 per_child: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] | None = None,
                 entropy: bool = True) -> None:
    """Write the report to ``path`` (one HTML file, nothing external); a missing folder raises ``UserError``.

    config: the run's configuration (shown as YAML); summary: headline figures (shown as cards, in order); top_rows:
    the top table's rows (columns in first-seen key order); function_png / progress_png: PNG bytes (see
    ``search.analysis.plots``); significance: ``Comparison.to_dict()`` records (or Comparisons), None when not run;
    wins_table: a ``WinsTable`` or its ``to_dict()``; significance_png: PNG bytes of the comparisons
    (``search.analysis.plots.plot_significance``), shown under the significance table when given; show: how a
    candidate's text is shown in the top table's ``expression`` / ``text`` column and the significance and wins
    tables (default ``search.analysis.formatting.display_text``: its simplest equivalent, ``= relu`` when it computes a
    baseline); best: the function the page leads with, ``text`` (as shown), ``png`` (its shape), ``note`` and
    ``comparisons`` (its own, in the metric's units: ``search.analysis.significance.metric_comparisons``); per_child:
    ``(label, comparisons)`` per study (``search.analysis.confirm.transfer_studies``), shown when there are two or more;
    entropy: whether the progress picture has the controller's entropy panel (``plots.plot_progress`` says). The page
    leads with the answer (the best function, its verdicts, the significance picture), then the course of the search,
    then the tables.
    """
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        raise UserError(f"{path}: " + ("is a directory; give a file name such as report.html" if path.is_dir()
                                       else f"no such directory {path.parent}"))
    sig = [c.to_dict() if hasattr(c, "to_dict") else c for c in significance] if significance is not None else None
    wins = WinsTable.from_dict(wins_table) if isinstance(wins_table, Mapping) else wins_table

    parts = [
        f"<header><h1>{_e(title)}</h1></header>",
        _summary(summary),
        "<h2>Significance against baselines</h2>",
        _answer(best) if best else "",
        "" if sig else '<p class="note">No significance results in this run yet: <code>actsearch significance RUN'
                       "</code> (or a <code>confirm:</code> section in the config) re-trains the top candidates and "
                       "the baselines over several seeds and compares them.</p>",
    ]
    if sig and significance_png is not None:
        parts.append(_image(significance_png, "significance comparisons",
                            "Per comparison: the paired per-seed differences (dots), the 95% t interval of "
                            "their mean (bar, | the mean), zero (line) and the verdict; each panel has its own scale."))
    parts += [
        "<h2>Progress</h2>",
        _image(progress_png, "search progress", "Reward per candidate with its best-so-far and moving average (over "
                                                 "children trained in full; those stopped early are hollow)" +
                                                 ("; the learning proposer's policy entropy per update." if entropy
                                                  else ".")),
        "<h2>Shapes of the top functions</h2>",
        _image(function_png, "top functions", "Each function (solid) and its derivative (dashed) on [-5, 5], "
                                              "every beta at its initial value 1."),
        "<h2>Top candidates</h2>",
        _table(top_rows, "No candidate has a reward yet.", show),
    ]
    if sig:
        parts += ["<h2>All comparisons</h2>", _significance(sig, show)]
    if wins is not None:
        parts += ["<h2>Wins / ties / losses</h2>", _wins(wins, show)]
    if per_child and len(per_child) > 1:
        parts += ["<h2>Per child: where the functions hold</h2>", _per_child(per_child, show)]
    config_text = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False).rstrip()
    parts += ["<h2>Configuration</h2>", f"<pre>{_e(config_text)}</pre>",
              f"<footer>Generated by actsearch {_e(_version())}.</footer>"]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
            + "\n".join(p for p in parts if p) + "\n</main></body></html>\n")
    atomic_write(path, page)  # a reader never sees half a page


# ---------------------------------------------------------------- a run's page

def left_open(counts: dict[str, int]) -> dict[str, int]:
    """A run's status counts when no search is running: its open candidates (proposed, pending, "running" children
    of a stopped session) are "left open", to be trained again when it resumes."""
    from search.loop.store.schema import OPEN_STATUSES

    out = {s: n for s, n in counts.items() if s not in OPEN_STATUSES}
    left = sum(counts.get(s, 0) for s in OPEN_STATUSES)
    return {**out, "left open": left} if left else out


# what the report's summary says of the run's state (search.analysis.dashboard.run_state) when it was written
STATE_TEXT = {"running": "running (a search was writing it when this report was made)",
              "finished": "finished", "stopped": "stopped before its end (continue: actsearch resume {run})",
              "new": "not started"}


def write_run_report(path: str | os.PathLike, run_dir: Path, config, store, k: int, plot_top: int) -> None:
    """``build_report`` of a run: its ``k`` best candidates (``search.analysis.ranking.ranked``), the shapes of the
    first ``plot_top``, its progress, and the current significance analysis when there is one, led by its best
    function (``search.analysis.confirm.best_of``; the search's best without one) and followed by every child it
    was tested on. config: the run's ``Config``; store: its ``Store`` (read-only is enough). Raises ``UserError``
    for a run without a trained candidate."""
    from search.analysis.confirm import best_of, transfer_studies
    from search.analysis.dashboard import lock_held, run_state
    from search.analysis.formatting import metric_rows, shows_metric
    from search.analysis.plots import plot_comparisons, plot_functions, plot_ranked, plot_run_progress
    from search.analysis.ranking import current_analysis, displayed, ranked, shows, statuses_text, verdicts_text
    from search.analysis.significance import metric_comparisons, study_label

    rows = displayed(store, ranked(store, config, k))
    if not rows:
        raise UserError(f"{run_dir}: no trained candidate yet; nothing to report")
    show = shows(rows)
    analysis = current_analysis(store, config)
    functions, progress = io.BytesIO(), io.BytesIO()
    plot_ranked(rows[:plot_top], functions, config.rewards)
    entropy = plot_run_progress(store, progress, config.rewards)  # whether it has the controller's entropy panel
    best = rows[0]
    state = run_state(store.sessions(), lock_held(run_dir))
    summary = {"run": run_dir.name, "state": STATE_TEXT.get(state, state).format(run=run_dir),
               "children": f"{store.evaluated()} / {config.budget.children}",
               "proposals": store.proposals(),
               "statuses": statuses_text(store.counts() if state == "running" else left_open(store.counts())),
               "controller updates": store.update_count(), "best reward": best["reward"],
               "best candidate": best["display"]}
    if shows_metric(config.rewards):
        del summary["best reward"]
        summary[f"best {config.rewards.metric}"] = config.rewards.metric_of(best["reward"])
        summary["reward"] = f"{config.rewards.metric}, {'lower' if config.rewards.minimize else 'higher'} is better"
    significance_png, lead = None, best["text"]
    if analysis:
        study = f"{analysis['seeds']} seeds, {study_label(analysis, config.to_dict()['child'])}"
        lead = best_of(analysis["comparisons"]) or lead
        summary["significance"] = (f"{len(analysis['candidates'])} candidates x {len(analysis['baselines'])} "
                                   f"baselines, {study}")
        buffer = io.BytesIO()
        plot_comparisons(analysis["comparisons"], buffer, study, config.rewards, show)
        significance_png = buffer.getvalue()
    picture = io.BytesIO()
    plot_functions([lead], picture, titles=[show(lead)])
    answer = {"text": show(lead), "png": picture.getvalue(),
              "note": f"(of {len(analysis['candidates'])} tested: {study})" if analysis else "(the search's best; not "
                      "yet tested against the baselines)",
              "comparisons": [c for c in metric_comparisons(analysis["comparisons"], config.rewards)
                              if c["candidate"] == lead] if analysis else []}
    per_child = [(label, metric_comparisons(comps, config.rewards))
                 for label, comps in transfer_studies(store.significance(), config.to_dict()["child"])]
    score = config.rewards.metric if shows_metric(config.rewards) else "reward"
    table = [{"rank": r["rank"], "expression": r["text"], score: r["reward"],
              "mean": r["mean"] if r["evaluations"] > 1 else None, "sd": r["sd"], "evaluations": r["evaluations"],
              "statuses": statuses_text(r["statuses"]), "proposed": r["proposed"], "candidate": r["index"],
              "significance": verdicts_text(r["significance"]) or None} for r in metric_rows(rows, config.rewards)]
    build_report(path, title=f"actsearch run {run_dir.name}", config=config.to_dict(), summary=summary,
                 top_rows=table, function_png=functions.getvalue(), progress_png=progress.getvalue(),
                 significance=metric_comparisons(analysis["comparisons"], config.rewards) if analysis else None,
                 wins_table=analysis["wins"] if analysis else None, significance_png=significance_png, show=show,
                 best=answer, per_child=per_child,
                 entropy=entropy)
