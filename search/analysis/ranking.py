"""A run's candidates ranked, as ``actsearch top``, the report and export show them: the search's reward beside the
mean and sd over every evaluation of the function (the search's child and the significance re-trainings under the run's
child settings), the statuses of those evaluations and the significance verdicts."""
from __future__ import annotations

import collections
import json
from pathlib import Path

from search.analysis.formatting import (
    candidate_columns,
    display_text,
    format_rows,
    metric_rows,
    score_columns,
    shown_columns,
    shows_metric,
    with_display,
)
from search.analysis.significance import default_study_key, metric_comparisons, study_key, study_label
from search.language.numbers import mean_sd

# `actsearch top`: the search's reward beside the re-trainings' mean, sd and verdicts.
RANKED_COLUMNS = candidate_columns("rank", "reward", "mean", "sd", "evaluations", "statuses", "text", "proposed",
                                   "index", "verdicts")


def current_analysis(store, config) -> dict | None:
    """The significance analysis to show: that of the default study (the run's child settings on the test split,
    see ``search.analysis.significance.default_study_key``) if there is one, else that of the run's own child settings
    (scored on the split the search selected on), else the newest."""
    analyses = store.significance()
    if not analyses:
        return None
    for key in (default_study_key(config), study_key(config)):
        home = [a for a in analyses if a["study"] == key]
        if home:
            return home[-1]
    return max(analyses, key=lambda a: a["at"])


def verdicts_text(comparisons: list[dict]) -> str:
    """``"better than relu, x; no evidence vs swish"``: a candidate's verdicts, grouped."""
    groups: dict[str, list[str]] = {}
    for c in comparisons:
        groups.setdefault(c["verdict"], []).append(c["baseline"])
    words = {"better": "better than", "worse": "worse than", "no evidence": "no evidence vs"}
    return "; ".join(f"{words.get(v, v)} {', '.join(bs)}" for v, bs in groups.items())


def statuses_text(statuses: dict[str, int]) -> str:
    """``"3 ok, 1 diverged"``."""
    return ", ".join(f"{n} {s}" for s, n in statuses.items() if n)


def ranked(store, config, k: int, pooled: bool = True) -> list[dict]:
    """The ``k`` best trained candidates (``Store.top``) with ``mean``, ``sd`` (``mean_sd``) and ``evaluations`` over
    the search's child and the re-trainings under the run's child settings, split included (test-split re-trainings
    score other data and are not pooled with the search's reward), ``statuses`` (status -> count over those), and
    ``significance``: the candidate's comparisons in the current analysis (see ``current_analysis``). Without
    ``pooled``, over the search's child alone."""
    rows = store.top(k)
    retrained = collections.defaultdict(list)
    for r in store.retrainings(study_key(config), [row["text"] for row in rows]) if pooled else []:
        retrained[r["activation"]].append(r)
    analysis = current_analysis(store, config)
    comparisons = collections.defaultdict(list)
    for c in analysis["comparisons"] if analysis else []:
        comparisons[c["candidate"]].append(c)
    for row in rows:
        again = retrained[row["text"]]
        scores = [row["reward"]] + [r["score"] for r in again]
        row["mean"], row["sd"] = mean_sd(scores)
        row["evaluations"] = len(scores)
        row["statuses"] = dict(collections.Counter([row["status"]] + [r["status"] for r in again]))
        row["significance"] = comparisons.get(row["text"], [])
    return rows


def displayed(store, rows: list[dict]) -> list[dict]:
    """``rows`` of ``store`` with ``simplest``, ``equals`` and ``display`` (``search.analysis.formatting.with_display``),
    the run's other texts of each function (its duplicates) counting as known equivalents."""
    return with_display(rows, store.texts_by_fingerprint(r["fingerprint"] for r in rows))


def shows(rows: list[dict]):
    """``show(text)``: the display of a candidate's text, the rows' own (``displayed``) first."""
    known = {r["text"]: r["display"] for r in rows}
    return lambda text: known.get(text) or display_text(text)


def run_summary(run_dir: Path, config, store) -> str:
    """One line: children trained / budget and their statuses, proposals, in flight, controller updates; and with
    early stopping on, a second: children stopped at each rung and the child steps saved."""
    from search.loop.store import CHILD_STATUSES, FREE_STATUSES, OPEN_STATUSES

    counts = store.counts()
    children = statuses_text({s: counts.get(s, 0) for s in CHILD_STATUSES})
    free = statuses_text({s: counts.get(s, 0) for s in FREE_STATUSES})
    running = sum(counts[s] for s in OPEN_STATUSES)
    line = (f"{run_dir}: {store.evaluated()}/{config.budget.children} children" + (f" ({children})" if children else "")
            + f", {store.proposals()} proposals" + (f" ({free})" if free else "")
            + f", {running} open, {store.update_count()} controller updates")
    if config.fidelity.rungs:
        from search.loop.fidelity import early_stopping_text

        line += f"\nearly stopping (rungs {', '.join(map(str, config.fidelity.rungs))} of {config.child.steps} steps, " \
                f"eta {config.fidelity.eta:g}): {early_stopping_text(store.child_steps(), config) or 'no child yet'}"
    return line


def ranked_note(config, analysis: dict | None, later: int = 0) -> str:
    """The line under ``run_summary`` saying how ``ranked`` rows are ordered and what their mean and sd cover; with
    ``later`` (``Store.analyses_after`` the shown one), that those tests' verdicts are not the ones shown."""
    pooled = "mean and sd over the search's child and significance re-trainings under the run's child settings (its " \
             "split included)"
    note = f"ranked by the search's reward; {pooled}"
    if config.rewards.minimize:
        note = f"ranked by {config.rewards.metric}, lowest (best) first; {pooled}"
    if analysis:
        note += f"; significance: {analysis['seeds']} seeds, {study_label(analysis, config.to_dict()['child'])}"
        if later:
            note += (f" (the run's confirmation; {later} later test{'s' * (later != 1)} of it printed "
                     f"{'its' if later == 1 else 'their'} own verdicts: the same `actsearch significance` command "
                     f"prints them again from the stored re-trainings)")
    return note


def ranked_text(rows: list[dict], fmt: str, rewards=None) -> str:
    """``ranked`` rows as ``fmt``: table, markdown and csv through ``search.analysis.formatting.format_rows``; json with
    every field (statuses as a mapping, significance as the comparison records). rewards: the run's ``RewardSettings``;
    with a named or minimised metric, reward and mean are shown as that metric (best first either way). Table and
    markdown show each function as its simplest text (``displayed`` rows; plain rows get it without the run's
    duplicates); csv and json keep the canonical ``text`` and add ``simplest`` and ``equals``. Table and markdown
    leave the mean of one evaluation blank (it is the reward beside it); csv and json give it."""
    rows = metric_rows(rows if all("display" in r for r in rows) else with_display(rows), rewards)
    if fmt == "json":
        keep = ("rank", "text", "simplest", "equals", "reward", "mean", "sd", "evaluations", "statuses", "proposed",
                "index", "fingerprint", "status", "seed", "significance") + (("metric", "lower_is_better")
                                                                             if shows_metric(rewards) else ())
        return json.dumps([{("candidate" if key == "index" else key):  # named as the table's column
                            (metric_comparisons(row.get(key), rewards) if key == "significance" else row.get(key))
                            for key in keep} for row in rows], indent=2, default=str)
    shown = [{**row, "mean": row["mean"] if row["evaluations"] > 1 or fmt == "csv" else None,  # data keeps the mean
              "statuses": statuses_text(row["statuses"]), "verdicts": verdicts_text(row["significance"]) or "-"}
             for row in rows]
    return format_rows(shown, shown_columns(score_columns(RANKED_COLUMNS, rewards), fmt), fmt)
