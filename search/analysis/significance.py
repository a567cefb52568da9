"""Which gains are real: re-train chosen candidates and baselines over paired seeds, compare them, decide.

One significance test of a run, in data-flow order: the run's config, changed by ``--set child.*`` / ``resources.*``
overrides (a bigger child, another task, other machines) and by the split the scores come from (``study_overrides``:
the test split unless told otherwise, see below) -> a *study*: the child settings, keyed by a hash of them ->
jobs: every activation (candidates and baselines) x seed number ``s`` in 0..n-1, minus the re-trainings the store
already holds for that study -> Ray workers train them with the search's own child task (``search.analysis.retrain``, through the engine)
and child seed ``retrain_seed(run seed, s)``: the same for every activation at seed number ``s``, so run ``s`` of
every candidate and baseline shares its initialisation and data order -> each result is written to the store as it
arrives (``Store.record_retraining``) -> once every job has a result: ``search.analysis.stats.compare_all`` (Holm over all
comparisons) and ``wins_table``, stored as the study's current analysis (``Store.record_significance``).

Resumable like a search: a killed or stopped test, run again with the same settings, trains only what is missing.
A re-training's score is the reward the search would give its child: the accuracy when "ok", ``rewards.failed``
when it diverged, failed or timed out (a candidate that blows up on some seeds loses those seeds).

Which held-out data: the search scored and selected its candidates on ``child.split`` (usually "val"); re-testing the
winners on those same examples favours them (selection bias: part of a top candidate's lead is its luck on exactly
those examples). So a study scores on ``SIGNIFICANCE_SPLIT`` ("test"), data the search never scored, unless
``--split`` (or ``--set child.split=...``) says otherwise. The synthetic task has no held-out data (its score is a
similarity to the target, whatever the split), so there the split is left as the run has it.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

from evaluator.tasks import SyntheticTask, find_task
from search.analysis.formatting import (
    SIGNIFICANCE_COLUMNS,
    SIGNIFICANCE_DATA_COLUMNS,
    Column,
    comparison_rows,
    format_rows,
    function_label,
)
from search.analysis.retrain import retrain
from search.analysis.stats import (
    ALPHA,
    EXACT_MAX_N,
    INTERVAL_REASONS,
    TIE_DECIMALS,
    Comparison,
    WinsTable,
    compare_all,
    interval_reason,
    rank_direction,
    seeds_needed,
    wins_table,
)
from search.language.errors import UserError
from search.loop.config import Config, ConfirmSettings, check_overrides, config_with_overrides, parse_override
from search.loop.progress import Progress
from search.loop.rundir import (
    LOG_FILE,
    check_study_sources,
    require_run_dir,
    require_writable_run_dir,
    run_config,
    run_lock,
)
from search.loop.store import Store

STUDY_SECTIONS = ("child", "resources")  # what --set may change: the child (transfer) and where children run
SIGNIFICANCE_SPLIT = "test"  # verdicts come from data the search never scored (it selected on child.split)
SPLITS = ("val", "test")


def study_key(config: Config) -> str:
    """12-hex key of what defines a re-training: the child settings and the run seed (each child's seed is
    ``retrain_seed(config.seed, s)``). Re-trainings under the same key belong to one study; another seed is another
    study, never mixed in."""
    text = json.dumps({"child": dataclasses.asdict(config.child), "seed": config.seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- what to test, and under which settings

def run_config_of(run_dir: Path) -> Config:
    """The config of the run in ``run_dir`` (as its store vouches for it). Raises ``UserError``."""
    run_dir = require_run_dir(run_dir)
    with Store.open(run_dir, readonly=True) as store:
        return run_config(run_dir, store)


def study_config(run_dir: Path, overrides: Sequence[str] = ()) -> Config:
    """The run's config with ``--set`` ``overrides`` of ``child.*`` / ``resources.*`` applied and validated.

    The study's config confirms nothing (its ``confirm`` section is the default): the run's ``confirm.children`` are
    checked against the run's child, not the study's. Raises ``UserError`` for an override of another section or a
    bad value.
    """
    check_overrides(overrides, STUDY_SECTIONS, "significance")
    return config_with_overrides(dataclasses.replace(run_config_of(run_dir), confirm=ConfirmSettings()), overrides)


def has_split(child: Config | dict) -> bool:
    """Whether the task scores on a held-out split at all (the synthetic task does not). child: a Config or the
    ``child`` section as a dict."""
    task = child.child.task if isinstance(child, Config) else child.get("task")
    return find_task(str(task)).retrains_on_split  # a table records one held-out score per seed


def study_overrides(run_dir: Path, overrides: Sequence[str] = (), split: str | None = None) -> list[str]:
    """The ``--set`` ``overrides`` of a study with its split made explicit: ``split`` ("val" | "test") when given,
    else the one a ``--set child.split=...`` names, else ``SIGNIFICANCE_SPLIT``; ``child.split=...`` is appended
    unless an override names it already (so the result passed in again comes back unchanged). Unchanged for the
    synthetic task (no held-out data: ``split`` has no effect there).

    Raises ``UserError`` for a bad override, an unknown split, or ``split`` contradicting ``--set child.split``.
    """
    if split is not None and split not in SPLITS:
        raise UserError(f"--split: must be one of {', '.join(SPLITS)}, got {split!r}")
    config = study_config(run_dir, overrides)  # validates the overrides first
    if not has_split(config):
        return list(overrides)
    named = any(parse_override(o)[0] == ["child", "split"] for o in overrides)
    if named:
        if split is not None and split != config.child.split:
            raise UserError(f"--split {split} and --set child.split={config.child.split}: name the split once")
        return list(overrides)
    return [*overrides, f"child.split={SIGNIFICANCE_SPLIT if split is None else split}"]


def default_study_key(config: Config) -> str:
    """The key of the study ``significance`` makes of the run with config ``config`` when given no ``--set`` and no
    ``--split``: the run's child settings scored on ``SIGNIFICANCE_SPLIT`` (as they are for the synthetic task)."""
    if not has_split(config):
        return study_key(config)
    return study_key(dataclasses.replace(config, child=dataclasses.replace(config.child, split=SIGNIFICANCE_SPLIT)))


def study_split(child: dict) -> str | None:
    """The split a study's scores come from (its ``child`` section as a dict); None for the synthetic task."""
    return child.get("split", "val") if has_split(child) else None


def selection_warning(run_child: dict, study_child: dict) -> str | None:
    """One warning line when a study scores on the split the search selected its candidates on, else None.
    run_child / study_child: the ``child`` sections of the run and of the study, as dicts."""
    split = study_split(study_child)
    if split is None or split != run_child.get("split", "val"):
        return None
    other = next(s for s in SPLITS if s != split)
    return (f"warning: verdicts on the {split} split, the held-out set the search scored and selected its candidates "
            f"on: they favour the candidates (selection bias); --split {other} uses data the search never scored")


def choose_candidates(store: Store, top: int | None, expressions: Sequence[str] = ()) -> list[str]:
    """Canonical texts of the candidates to test: the ``top`` best trained ("ok") candidates of the run, then
    ``expressions`` (any expression text), without repeats. Raises ``UserError`` when that leaves none."""
    from search.language.expression import Expression

    texts = []
    if top:  # the best ``top`` that trained to the end: a child stopped early ranks by a cheaper score
        texts += [r["text"] for r in store.top(top, statuses=("ok",))]
    texts += [Expression.parse(e).text for e in expressions]
    texts = list(dict.fromkeys(texts))
    if not texts:
        raise UserError("nothing to test: the run has no trained candidate yet (run or resume the search, or name "
                        "expressions with --candidates)")
    return texts


def baseline_labels(names: Sequence[str], config: Config) -> list[str]:
    """Baseline names (``relu``, ``swish``, ...) or expression texts, as the labels results are recorded under.

    Raises ``UserError`` naming an unknown baseline, or a named one the synthetic task cannot score.
    """
    from evaluator.activations import BASELINES, activation_label, repeated_baseline

    labels = []
    for name in names:
        try:
            label = activation_label(name)
        except UserError as exc:
            raise UserError(f"--baselines: {exc}") from None
        if isinstance(find_task(config.child.task), SyntheticTask) and label in BASELINES:
            raise UserError(f"--baselines: {name!r}: the synthetic task scores expressions only; write it as one, "
                            f"e.g. relu(x) or x * sigmoid(beta * x)")
        labels.append(label)
    if not labels:
        raise UserError("--baselines: name at least one baseline")
    repeat = repeated_baseline(names)
    if repeat:
        raise UserError(f"--baselines: {repeat}")
    return list(dict.fromkeys(labels))


def comparisons_count(candidates: Sequence[str], baselines: Sequence[str]) -> int:
    """How many (candidate, baseline) comparisons a test makes (a function is not compared with itself)."""
    return sum(c != b for c in candidates for b in baselines)


def too_few_seeds(candidates: Sequence[str], baselines: Sequence[str], seeds: int) -> str | None:
    """One warning line when ``seeds`` can give no verdict at all for this many comparisons, else None."""
    m = comparisons_count(candidates, baselines)
    need = seeds_needed(max(m, 1))
    if seeds >= need:
        return None
    return (f"warning: {seeds} seeds can give no verdict for {m} comparison{'s' * (m != 1)} (Holm-corrected "
            f"Wilcoxon p can never fall below 0.05); use --seeds {need} or more")


# ---------------------------------------------------------------- the test

@dataclass
class SignificanceResult:
    """How a significance test ended. outcome: "complete" (every re-training has a result; analysed) or
    "interrupted" (stopped; run the same command again to continue)."""

    outcome: str
    study: str
    total: int  # re-trainings the test needs
    reused: int  # found in the store (not trained again)
    trained: int  # trained in this session
    comparisons: list[Comparison] = field(default_factory=list)
    wins: WinsTable | None = None
    split: str | None = None  # the held-out split the scores come from; None for a task without one (synthetic, table)
    task: str = ""  # the child's task

    def where(self) -> str:
        """Where the scores come from, for a sentence: "on the test split", or the task's own where it has no split."""
        if self.split:
            return f"on the {self.split} split"
        if self.task == "table":
            return "on the table's recorded seeds"
        return f"on the {self.task} task (no held-out split)"


def run_significance(run_dir: str | Path, candidates: Sequence[str], baselines: Sequence[str], seeds: int,
                     overrides: Sequence[str] = (), out: TextIO | None = None,
                     progress_every_s: float = 30.0, split: str | None = None,
                     confirmation: bool = False, accept_changed: bool = False) -> SignificanceResult:
    """Re-train ``candidates`` and ``baselines`` (labels: canonical expression texts or baseline names) with seed
    numbers 0..seeds-1 under the run's child settings changed by ``overrides`` and scored on ``split`` (default
    ``SIGNIFICANCE_SPLIT``, see ``study_overrides``), then compare every candidate with every baseline. Progress goes
    to ``out`` (stdout by default) and the run's log. ``confirmation``: the run's ``confirm:`` stage asks, and its
    analysis stays the study's current one (``Store.significance``). ``accept_changed``: go on although a file that
    defines the reward changed since the study began (``check_study_sources``).

    Returns a ``SignificanceResult``; raises ``UserError`` for a missing or busy run directory, bad overrides, a
    study a replayed table cannot score (a function or seed it lacks), or a broken setup (the first re-trainings all
    failing with one error: nothing of them is recorded).
    """
    run_dir = require_writable_run_dir(run_dir)
    out = sys.stdout if out is None else out
    if seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {seeds}")
    overrides = study_overrides(run_dir, overrides, split)
    config = study_config(run_dir, overrides)
    key = study_key(config)
    study_child = config.to_dict()["child"]
    label = study_label({"child": study_child}, run_config_of(run_dir).to_dict()["child"])
    activations = list(dict.fromkeys([*candidates, *baselines]))
    problem = find_task(config.child.task).study_problem(config.child, activations, seeds, config.search_path())
    if problem:
        raise UserError(problem)
    from search.loop.pool import check_address

    check_address(config)  # a cluster that does not answer, or data this machine lacks: before the study is recorded
    with run_lock(run_dir), Store.open(run_dir) as store, open(run_dir / LOG_FILE, "a") as log:
        progress = Progress(out, log, progress_every_s)
        check_study_sources(store, key, config, accept_changed, say=progress.event)  # one version of the child
        store.record_study(key, config.to_dict()["child"], [o for o in overrides if o.strip().startswith("child.")])
        done = {(r["activation"], r["seed_number"]) for r in store.retrainings(key, activations)}
        stored = 1 + max((s for a, s in done if all((b, s) in done for b in activations)), default=-1)
        if stored > seeds:  # the analysis of fewer seeds becomes the study's current one: say what it leaves out
            progress.event(f"note: {stored} seeds of these functions are stored in study {key}; this test uses "
                           f"{seeds} and becomes its current analysis (--seeds {stored} uses them all)")
        # seed-major order: a test stopped half-way already holds whole pairs
        jobs = [(a, s) for s in range(seeds) for a in activations if (a, s) not in done]
        total = len(activations) * seeds
        result = SignificanceResult("complete", key, total, total - len(jobs), 0, split=study_split(study_child),
                                    task=config.child.task)
        progress.event(f"significance study {key} ({label}): {len(candidates)} candidate(s) x {len(baselines)} "
                       f"baseline(s), {seeds} seeds: {total} re-trainings, {result.reused} already done, "
                       f"{len(jobs)} to train")
        if jobs:
            try:
                again = f"continue with `actsearch resume {run_dir}`" if confirmation else "run the same command again"
                result.outcome, result.trained = retrain(config, key, store, progress, jobs, again=again)
            finally:
                progress.close()
        if result.outcome == "complete":
            result.comparisons, result.wins = analyse(store, key, candidates, baselines, seeds)
            analysis = (list(candidates), list(baselines), seeds, [c.to_dict() for c in result.comparisons],
                        result.wins.to_dict())
            current = next((a for a in store.significance() if a["study"] == key), None)
            if current is None or analysis != tuple(current[k] for k in ("candidates", "baselines", "seeds",
                                                                          "comparisons", "wins")):
                store.record_significance(key, *analysis, confirmation=confirmation)  # else stored already: a resumed
                # finished run, or the same test again, leaves the store as it was
            verdicts = collections.Counter(c.verdict for c in result.comparisons)
            progress.event(f"significance study {key} analysed: " + ", ".join(f"{n} {v}" for v, n in
                                                                               verdicts.items()), show=False)
        return result


def analyse(store: Store, study: str, candidates: Sequence[str], baselines: Sequence[str],
            seeds: int) -> tuple[list[Comparison], WinsTable]:
    """Compare every candidate with every baseline on the study's scores for seed numbers 0..seeds-1 (Holm over all
    comparisons) and count wins / ties / losses per seed."""
    scores: dict[str, dict[int, float]] = {a: {} for a in [*candidates, *baselines]}
    for row in store.retrainings(study, list(scores)):
        if row["seed_number"] < seeds:
            scores[row["activation"]][row["seed_number"]] = row["score"]
    comparisons = compare_all(scores, candidates, baselines)
    return comparisons, wins_table(scores, candidates, baselines, unit="seed")


# ---------------------------------------------------------------- tables

def metric_comparisons(comparisons: Sequence[Comparison | dict], rewards) -> list[dict]:
    """The comparisons as dicts in the units of ``rewards.metric``: when minimising, the scores compared are rewards
    (minus the metric, so that higher is better for the statistics), and this turns the means back into the metric
    and the differences (mean, interval, per seed) into candidate minus baseline in the metric, negative being
    better. The p-values, wins (seeds where the candidate was better, i.e. lower) and verdicts stay as they are.
    ``metric`` and ``lower_is_better`` are added. Unchanged (as dicts) when higher is better."""
    out = []
    for c in comparisons:
        d = c.to_dict() if isinstance(c, Comparison) else dict(c)
        if rewards is not None and rewards.minimize and not d.get("lower_is_better"):
            flip = rewards.metric_of
            direction = rank_direction(d.get("diffs") or [])
            d.update(candidate_mean=flip(d.get("candidate_mean")), baseline_mean=flip(d.get("baseline_mean")),
                     mean_diff=flip(d.get("mean_diff")), ci_low=flip(d.get("ci_high")), ci_high=flip(d.get("ci_low")),
                     diffs=[flip(v) for v in d.get("diffs") or []], metric=rewards.metric, lower_is_better=True)
            if d.get("reason", "").startswith(INTERVAL_REASONS):  # its interval, in the metric's units as shown
                d["reason"] = interval_reason(d["ci_low"], d["ci_high"], direction)
        elif rewards is not None:
            d.setdefault("metric", rewards.metric)
            d.setdefault("lower_is_better", False)
        out.append(d)
    return out


def metric_note(rewards) -> str | None:
    """One line saying what the scores are when they are not plain accuracy rewards; None otherwise."""
    if rewards is None or (rewards.metric == "accuracy" and not rewards.minimize):
        return None
    if rewards.minimize:
        return (f"Scores: {rewards.metric}, lower is better; differences are candidate minus baseline in "
                f"{rewards.metric} (negative: the candidate is better); w/t/l and the verdicts count lower as better.")
    return f"Scores: {rewards.metric}, higher is better."


def significance_table(comparisons: Sequence[Comparison | dict], fmt: str = "table", rewards=None) -> str:
    """The comparisons (``Comparison`` or its dict) as ``fmt`` (table | markdown | csv | json): one row each.
    rewards: the run's ``RewardSettings``; with a minimised metric the means and differences are in that metric
    (``metric_comparisons``)."""
    rows = comparison_rows(metric_comparisons(comparisons, rewards))
    if fmt == "json":
        return json.dumps([{k: v for k, v in r.items() if k not in ("ci", "wtl")} for r in rows], indent=2)
    return format_rows(rows, SIGNIFICANCE_DATA_COLUMNS if fmt == "csv" else SIGNIFICANCE_COLUMNS, fmt)


def wins_text(table: WinsTable | dict, fmt: str = "table") -> str:
    """The paper's wins / ties / losses summary: one row per candidate, one ``w/t/l`` column per baseline."""
    table = WinsTable.from_dict(table) if isinstance(table, dict) else table
    shown = function_label if fmt in ("table", "markdown") else str  # CSV and JSON keep the canonical texts
    columns = [Column("candidate", "candidate", function_label)] + [Column(b, shown(b), str, right=True)
                                                                     for b in table.baselines]
    return format_rows(table.rows(), columns, fmt)


def study_label(study: dict, run_child: dict) -> str:
    """How a study differs from the run's own child settings, and the split its scores come from:
    "the run's child settings, test split", or its changed settings ("child settings changed: child.steps=2000, test
    split"); the split is left out for the synthetic task and marked when it is the one the search selected on.
    study: a stored study (or ``{"child": dict}``); run_child: the run's ``child`` section as a dict."""
    child = study["child"]
    changed = [f"child.{k}={v}" for k, v in child.items() if k != "split" and run_child.get(k) != v]
    if child == run_child or (not changed and {**child, "split": None} == {**run_child, "split": None}):
        label = "the run's child settings"
    else:
        label = "child settings changed: " + (", ".join(changed) or ", ".join(
            o for o in study.get("overrides", []) if not o.strip().startswith("child.split")))
    split = study_split(child)
    if split is None:
        return label
    return f"{label}, {split} split" + (" (the set the search selected on)" if split == run_child.get("split", "val")
                                        else "")


def statistics_text(comparisons: Sequence[Comparison | dict], seeds: int, split: str | None,
                    run_split: str | None = None, width: int = 116, task: str = "synthetic") -> str:
    """What the verdicts rest on, for the command's output: pairing, the tie rule, the test, the verdict rule with
    ``seeds_needed`` for this many comparisons, and the split the scores come from (``split``; None for a ``task``
    without one, synthetic or table; ``run_split``: the one the search selected on). Wrapped to ``width`` columns."""
    m = len(comparisons)
    alpha = (comparisons[0].alpha if isinstance(comparisons[0], Comparison) else comparisons[0].get("alpha", ALPHA)) \
        if comparisons else ALPHA
    need = seeds_needed(max(m, 1), alpha)
    if split is None and task == "table":
        where = "Split: none; a replayed table's scores are those its children recorded, seed by seed."
    elif split is None:
        where = f"Split: none; the {task} task has no held-out data (the score is the similarity to its target)."
    elif split == (run_split or "val"):
        where = (f"Split: {split}, the held-out set the search scored and selected its candidates on; these verdicts "
                 f"favour the candidates (selection bias).")
    else:
        where = f"Split: {split}, held-out data the search never scored (it selected on {run_split or 'val'})."
    text = [
        f"Statistics: runs are paired by seed; differences are candidate minus baseline, rounded to "
        f"1e-{TIE_DECIMALS} so that equal gains tie exactly (w/t/l counts the same way). Wilcoxon p: the "
        f"two-sided signed-rank test, zero differences dropped, tied |differences| sharing their midrank, exact up to "
        f"{EXACT_MAX_N} non-zero differences. Verdict better / worse: the Holm p over {'all ' * (m > 1)}{m} comparison"
        f"{'s' * (m != 1)} below {alpha:g} and the 95% t interval of the mean difference on that side of "
        f"zero; otherwise no evidence. With {m} comparison{'s' * (m != 1)} a verdict needs at least {need} seeds "
        f"(seeds_needed; this test has {seeds}), all on one side; seeds that disagree or tie need more.",
        where,
    ]
    return "\n".join(textwrap.fill(t, width) for t in text)
