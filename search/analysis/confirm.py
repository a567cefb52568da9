"""A run that ends with verdicts: once the search's budget is spent, its best functions are re-trained against baselines
over paired seeds (the ``confirm:`` section, ``search.loop.confirm.ConfirmSettings``), and the answer is told first.

In data-flow order: the run's config with a session's ``--set`` overrides (a resumed run may change ``confirm.*``,
which is then written to its ``config.yaml``) -> the ``confirm.top`` functions with the best estimate
(``best_estimates``: the mean over a function's evaluations where it has several, else its reward) -> one study per
child: the run's own child settings, then each of ``confirm.children``, each through ``run_significance`` on
``confirm.split`` (the same studies as ``actsearch significance``, stored the same way: a stopped confirmation trains
only what is missing when the run is resumed) -> the answer (``answer_text``): the best confirmed function
(``best_of``) with one verdict line per baseline, the other functions' verdicts, and per child which functions beat
which baselines (``generalization``: better on k of n children).
"""
from __future__ import annotations

import collections
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TextIO

from search.analysis.formatting import display_text
from search.analysis.significance import (
    SignificanceResult,
    baseline_labels,
    comparisons_count,
    metric_comparisons,
    run_config_of,
    run_significance,
    selection_warning,
    study_config,
    study_key,
    study_label,
    study_overrides,
)
from search.analysis.stats import format_p, seeds_needed
from search.loop.config import Config, check_resume_overrides, config_with_overrides, parse_override
from search.loop.config_yaml import yaml_scalar
from search.loop.store.schema import SEARCH_ENDED

CONFIRM_AFTER = SEARCH_ENDED  # search outcomes after which a run confirms


@dataclass
class ChildStudy:
    """One confirming child: ``name`` ("" for the run's own child settings), how its study differs from the run's
    (``label``), and its significance test."""

    name: str
    label: str
    result: SignificanceResult


@dataclass
class Confirmation:
    """How a run's confirmation ended. outcome: "complete" (every study analysed), "interrupted" (stopped: resume the
    run to continue) or "skipped" (``note`` says why)."""

    outcome: str
    candidates: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    seeds: int = 0
    studies: list[ChildStudy] = field(default_factory=list)
    note: str = ""


# ---------------------------------------------------------------- what to confirm, and where

def session_config(run_dir: Path, overrides: Sequence[str] = ()) -> Config:
    """The run's config with a session's ``--set`` overrides (``budget.*``, ``resources.*``, ``confirm.*``) applied."""
    check_resume_overrides(overrides)
    return config_with_overrides(run_config_of(run_dir), overrides)


def best_estimates(store, config: Config, k: int, pooled: bool = True) -> list[str]:
    """Canonical texts of the ``k`` trained ("ok") functions with the best estimate: the mean over the search's child
    and the re-trainings under the run's child settings (``search.analysis.ranking.ranked``) where a function has
    several, else its reward; ties keep the search's order. Without ``pooled``, by the search's rewards alone: where
    those re-trainings are the confirmation's own study (``own_study``), choosing by them would test the
    functions on the scores that chose them."""
    from search.analysis.ranking import ranked

    rows = [r for r in ranked(store, config, max(10 * k, 100), pooled) if r["status"] == "ok"]
    rows.sort(key=lambda r: (-r["mean"], r["rank"]))
    return [r["text"] for r in rows[:k]]


def own_study(run_dir: Path, config: Config) -> bool:
    """Whether the confirmation's study on the run's own child is the one whose re-trainings ``ranked`` pools with
    the search's rewards (``confirm.split`` the search's split, or the synthetic task, which has none): an earlier
    ``actsearch significance`` of it would otherwise both choose the functions and be reused to test them."""
    study = study_config(run_dir, study_overrides(run_dir, [], config.confirm.split))
    return study_key(study) == study_key(config)


def child_overrides(entry: dict) -> list[str]:
    """``--set`` overrides of the child section from one of ``confirm.children``: ``child.KEY=VALUE`` each, a user
    child's ``options`` key by key (merged into the run's), ``options: {}`` clearing them (a built-in child takes
    none)."""
    out = []
    for key, value in entry.items():
        if key == "options" and value == {}:
            out.append("child.options={}")
        elif key == "options" and isinstance(value, dict):
            out += [f"child.options.{k}={yaml_scalar(v)}" for k, v in value.items()]
        else:
            out.append(f"child.{key}={yaml_scalar(value)}")
    return out


def confirm_warnings(config: Config) -> list[str]:
    """One line each: too few ``confirm.seeds`` for any verdict (with the number needed), and verdicts on the split the
    search selected on. Empty when confirmation is off."""
    c = config.confirm
    if not c.enabled:
        return []
    out = []
    m = c.top * len(c.baselines)
    need = seeds_needed(m)
    if c.seeds < need:
        out.append(f"warning: confirm.seeds {c.seeds} can give no verdict for {c.top} x {len(c.baselines)} "
                   f"comparisons (Holm-corrected Wilcoxon p can never fall below 0.05); it needs {need} or more: "
                   f"--set confirm.seeds={need}")
    child = config.to_dict()["child"]
    warning = selection_warning(child, {**child, "split": c.split})
    if warning:
        out.append(warning.replace("--split", "confirm.split"))
    return out


CHOSEN_META = "confirm_candidates"  # what a confirmation chose: {"top": K, "evaluated": children, "texts": [...]}


def _begin(run_dir: Path, config: Config) -> list[str]:
    """Under the run's lock: write ``config``'s confirm section to the run's ``config.yaml`` when it changed (so a plain
    resume confirms the same way), and return the functions to confirm: those recorded by an earlier session for
    the same ``confirm.top`` and as many children trained, else ``best_estimates`` now, recorded (by the search's
    rewards alone where the confirmation's study is the pooled one: ``own_study``), so a resumed confirmation trains
    the same functions."""
    import dataclasses

    from search.loop.rundir import run_lock, write_run_config
    from search.loop.store import Store

    with run_lock(run_dir), Store.open(run_dir) as store:
        stored = run_config_of(run_dir)
        if stored.confirm != config.confirm:
            write_run_config(run_dir, dataclasses.replace(stored, confirm=config.confirm))
        chosen = store.get_meta(CHOSEN_META)
        now = {"top": config.confirm.top, "evaluated": store.evaluated()}
        if isinstance(chosen, dict) and {k: chosen.get(k) for k in now} == now:
            return list(chosen["texts"])
        texts = best_estimates(store, config, config.confirm.top, pooled=not own_study(run_dir, config))
        if texts:
            store.set_meta(CHOSEN_META, {**now, "texts": texts})
        return texts


# ---------------------------------------------------------------- the confirmation

def confirm_run(run_dir: str | Path, overrides: Sequence[str] = (), out: TextIO | None = None,
                progress_every_s: float = 30.0) -> Confirmation | None:
    """Confirm the run in ``run_dir`` as its ``confirm:`` section says (changed by ``overrides``), once its search is
    over: the ``confirm.top`` functions by ``best_estimates`` against ``confirm.baselines``, ``confirm.seeds`` paired
    seeds on ``confirm.split``, on the run's child and then on each of ``confirm.children`` (a study each). None when
    confirmation is off. Progress goes to ``out`` (stdout by default) and the run's log; warnings to stderr.

    Raises ``UserError`` as ``run_significance`` does (a busy run, bad settings, a broken setup).
    """
    run_dir = Path(run_dir)
    config = session_config(run_dir, overrides)
    c = config.confirm
    if not c.enabled:
        return None
    candidates = _begin(run_dir, config)
    if not candidates:
        return Confirmation("skipped", note="the search trained no function")
    baselines = baseline_labels(c.baselines, config)
    if not comparisons_count(candidates, baselines):
        return Confirmation("skipped", candidates, baselines, note="every function to confirm is a baseline")
    for warning in confirm_warnings(config):
        print(warning, file=sys.stderr)
    resources = [o for o in overrides if parse_override(o)[0][0] == "resources"]
    run_child = config.to_dict()["child"]
    confirmation = Confirmation("complete", candidates, baselines, c.seeds)
    for name, child in [("", []), *((n, child_overrides(e)) for n, e in c.children.items())]:
        result = run_significance(run_dir, candidates, baselines, c.seeds, [*child, *resources], out,
                                  progress_every_s, split=c.split, confirmation=True)
        study = study_config(run_dir, study_overrides(run_dir, child, c.split)).to_dict()["child"]
        confirmation.studies.append(ChildStudy(name, study_label({"child": study}, run_child), result))
        if result.outcome != "complete":
            confirmation.outcome = "interrupted"
            break
    return confirmation


# ---------------------------------------------------------------- the answer

def best_of(comparisons: Sequence[dict]) -> str | None:
    """The candidate to lead with: the most "better" verdicts, then the fewest "worse", then the highest mean score
    (the reward's sense: higher is better); None without comparisons. comparisons: ``Comparison.to_dict()`` records
    (not ``metric_comparisons``)."""
    score: dict[str, list] = {}
    for c in comparisons:
        s = score.setdefault(c["candidate"], [0, 0, c.get("candidate_mean") or float("-inf")])
        s[0] += c["verdict"] == "better"
        s[1] -= c["verdict"] == "worse"
    return max(score, key=lambda k: score[k]) if score else None


def verdict_line(c: dict) -> str:
    """One line: the baseline, the verdict, the mean difference with its 95% interval, the Holm p and w/t/l, and why
    "no evidence" when the statistics say. c: a ``metric_comparisons`` record."""
    def number(v):
        return "-" if v is None else f"{v:+.4f}"

    reason = f"  ({c['reason']})" if c.get("reason") else ""
    return (f"  vs {c['baseline']:<12} {c['verdict']:<12} {number(c.get('mean_diff'))} "
            f"[{number(c.get('ci_low'))}, {number(c.get('ci_high'))}]  Holm p {format_p(c.get('wilcoxon_p_holm'))}  "
            f"w/t/l {c['wins']}/{c['ties']}/{c['losses']}{reason}")


def verdicts_of(comparisons: Sequence[dict], candidate: str) -> str:
    """``"better than relu; no evidence vs swish, gelu"``: one candidate's verdicts, grouped."""
    from search.analysis.ranking import verdicts_text

    return verdicts_text([c for c in comparisons if c["candidate"] == candidate])


def generalization(studies: Sequence[tuple[str, Sequence[dict]]]) -> dict[str, dict[str, tuple[int, int]]]:
    """candidate -> baseline -> (k, n): the children (studies: ``(label, comparisons)``) on which the candidate was
    judged better than the baseline, of those on which the two were compared: the paper's "generalizes to k of n
    models", with verdicts instead of medians."""
    out: dict[str, dict[str, list[int]]] = collections.defaultdict(dict)
    for _, comparisons in studies:
        for c in comparisons:
            k_n = out[c["candidate"]].setdefault(c["baseline"], [0, 0])
            k_n[0] += c["verdict"] == "better"
            k_n[1] += 1
    return {cand: {b: (k, n) for b, (k, n) in row.items()} for cand, row in out.items()}


def answer_text(confirmation: Confirmation, rewards=None, show: Callable[[str], str] = display_text) -> str:
    """The closing answer of a confirmed run: the best function with one verdict line per baseline (difference
    candidate minus baseline in the metric, 95% interval), the other confirmed functions' verdicts, and per other child
    its verdicts and how many children each function beat each baseline on."""
    if confirmation.outcome == "skipped":
        return f"no confirmation: {confirmation.note}"
    home = confirmation.studies[0]
    if home.result.outcome != "complete":
        return (f"confirmation stopped: {home.result.reused + home.result.trained} of {home.result.total} "
                f"re-trainings on the run's child recorded")
    comparisons = metric_comparisons(home.result.comparisons, rewards)
    best = best_of([c.to_dict() for c in home.result.comparisons])
    where = home.result.where()
    label = home.label.replace(f", {home.result.split} split", "") if home.result.split else home.label  # in `where`
    lines = [f"answer: {show(best)}: best of {len(confirmation.candidates)} confirmed function"
             f"{'s' * (len(confirmation.candidates) != 1)}, {confirmation.seeds} paired seeds {where}, "
             f"{label}; difference = function minus baseline, 95% interval:"]
    lines += [verdict_line(c) for c in comparisons if c["candidate"] == best]
    others = [t for t in confirmation.candidates if t != best and any(c["candidate"] == t for c in comparisons)]
    lines += [f"  {show(t)}: {verdicts_of(comparisons, t)}" for t in others]
    children = [s for s in confirmation.studies[1:] if s.result.outcome == "complete"]
    if children:
        lines.append("on other children (confirm.children):")
        for s in children:
            theirs = [c.to_dict() for c in s.result.comparisons]
            lines += [f"  {s.name} ({s.label}): {show(t)}: {verdicts_of(theirs, t)}"
                      for t in confirmation.candidates if any(c["candidate"] == t for c in theirs)]
        counts = generalization([(s.label, [c.to_dict() for c in s.result.comparisons])
                                 for s in [home, *children]])
        lines.append(f"better on k of {len(children) + 1} children:")
        lines += [f"  {show(t)}: " + ", ".join(f"{b} {k} of {n}" for b, (k, n) in counts[t].items())
                  for t in confirmation.candidates if t in counts]
    return "\n".join(lines)


def transfer_studies(analyses: Sequence[dict], run_child: dict) -> list[tuple[str, list[dict]]]:
    """``(label, comparisons)`` of each stored analysis (``Store.significance``) whose scores come from data the search
    did not select on (a study on the split the search selected on favours its functions, so it is left out): the
    studies that say on which children the functions hold. run_child: the run's ``child``
    section as a dict."""
    from search.analysis.significance import study_split

    split = run_child.get("split", "val")
    return [(study_label(a, run_child), a["comparisons"]) for a in analyses
            if study_split(a["child"]) is None or study_split(a["child"]) != split]
