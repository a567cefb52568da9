"""`actsearch significance`: paired re-training on Ray workers, the verdicts, resuming a killed test, studies."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from conftest import run_cli as cli

from evaluator.train import train_child
from search.analysis.significance import (
    default_study_key,
    selection_warning,
    study_config,
    study_key,
    study_label,
    study_overrides,
)
from search.analysis.stats import seeds_needed
from search.language.errors import UserError
from search.loop.config import child_seed, config_from_dict, retrain_seed
from search.loop.pool import ChildPool
from search.loop.rundir import create_run
from search.loop.store import Store


def make_run(folder: Path, address: str, child: dict, name: str = "run", seed: int = 5, **resources) -> Path:
    """A run directory (config and empty store) as `actsearch run` creates it; no search needed to test functions."""
    config = config_from_dict({"seed": seed, "child": child, "budget": {"children": 4},
                               "resources": {"address": address, "cpus_per_child": 1, **resources}})
    run = folder / name
    create_run(run, config)
    return run




def test_identity_is_judged_worse_than_relu_on_the_proxy_on_the_test_split(address, tmp_path, capsys):
    # 150 steps on 1,000 signals: relu reaches ~0.73, identity (a linear network) ~0.29, on every seed
    child = {"task": "mnist1d", "steps": 150, "train_size": 1000, "val_size": 1000, "device": "cpu", "threads": 1,
             "data_dir": str(tmp_path / "data")}
    run = make_run(tmp_path, address, child)
    seeds = seeds_needed(1)  # 6: with fewer, no p-value could fall below 0.05
    plot = tmp_path / "significance.png"
    code, out, err = cli(capsys, "significance", run, "--candidates", "x", "--baselines", "relu", "--seeds", seeds,
                         "--plot", plot)
    assert code == 0, err
    assert "warning" not in err
    row = next(line for line in out.splitlines() if line.startswith("x "))
    assert row.split()[1] == "relu" and row.endswith("worse") and f"0/0/{seeds}" in row
    # the verdicts come from the test split, data the search never scored, and the output says so
    flat = " ".join(out.split())  # the statistics text is wrapped
    assert f"1 comparison over {seeds} seeds on the test split" in flat
    assert "Split: test, held-out data the search never scored (it selected on val)" in flat
    assert "rounded to 1e-9 so that equal gains tie exactly" in flat
    assert f"a verdict needs at least {seeds} seeds (seeds_needed; this test has {seeds})" in flat
    assert "the run's child settings, test split" in flat
    assert f"wrote {plot}" in out and plot.read_bytes().startswith(b"\x89PNG")

    with Store.open(run, readonly=True) as store:
        [analysis] = store.significance()
        retrained = store.retrainings()
    assert analysis["child"]["split"] == "test" and analysis["overrides"] == ["child.split=test"]
    assert analysis["study"] == default_study_key(config_from_dict({"seed": 5, "child": child}))
    assert all(r["metrics"]["split"] == "test" for r in retrained)
    [comparison] = analysis["comparisons"]
    assert comparison["verdict"] == "worse" and comparison["n"] == seeds and comparison["losses"] == seeds
    assert comparison["ci_high"] < 0
    scores = {(r["activation"], r["seed_number"]): r["score"] for r in retrained}
    diffs = [scores["x", s] - scores["relu", s] for s in range(seeds)]
    assert comparison["diffs"] == pytest.approx(diffs)
    assert comparison["wilcoxon_p"] == pytest.approx(2 / 2**seeds)  # every seed lost: the smallest p there is
    assert analysis["wins"]["cells"] == {"x": {"relu": [0, 0, seeds]}}

    # pairing: seed number s is one child seed for both functions, distinct per s and from the search's seeds
    assert len(retrained) == 2 * seeds and all(r["status"] == "ok" for r in retrained)
    for r in retrained:
        assert r["seed"] == retrain_seed(5, r["seed_number"]) == r["metrics"]["seed"]
    assert len({r["seed"] for r in retrained}) == seeds
    assert not {r["seed"] for r in retrained} & {child_seed(5, i) for i in range(1000)}
    # ... and that seed is the whole story: training relu with it on the test split here gives the stored score
    settings = config_from_dict({"child": {**child, "split": "test"}}).child
    assert train_child(settings, "relu", retrain_seed(5, 0)).to_dict()["accuracy"] == scores["relu", 0]


def test_the_split_of_a_study(tmp_path):
    mnist = make_run(tmp_path, "", {"task": "mnist1d", "steps": 5}, name="mnist")
    syn = synthetic_run(tmp_path, "")
    # default: the test split, made explicit so it is recorded with the study
    assert study_overrides(mnist) == ["child.split=test"]
    assert study_overrides(mnist, ["child.steps=9"]) == ["child.steps=9", "child.split=test"]
    assert study_config(mnist, study_overrides(mnist)).child.split == "test"
    # asked for: the selection set, with a warning; the same through --set
    assert study_overrides(mnist, split="val") == study_overrides(mnist, ["child.split=val"]) == ["child.split=val"]
    assert study_overrides(mnist, study_overrides(mnist, split="val")) == ["child.split=val"]  # passed on unchanged
    assert study_overrides(mnist, ["child.split=test"], split="test") == ["child.split=test"]
    with pytest.raises(UserError, match="name the split once"):
        study_overrides(mnist, ["child.split=val"], split="test")
    run_child = study_config(mnist).to_dict()["child"]
    test_child = study_config(mnist, ["child.split=test"]).to_dict()["child"]
    assert "selection bias" in selection_warning(run_child, run_child)
    assert selection_warning(run_child, test_child) is None
    assert study_label({"child": test_child}, run_child) == "the run's child settings, test split"
    assert study_label({"child": run_child}, run_child) == \
        "the run's child settings, val split (the set the search selected on)"
    # the synthetic task scores no held-out data: the split is left alone and never mentioned
    assert study_overrides(syn) == [] and study_overrides(syn, split="val") == []
    syn_child = study_config(syn).to_dict()["child"]
    assert selection_warning(syn_child, syn_child) is None
    assert study_label({"child": syn_child}, syn_child) == "the run's child settings"
    assert default_study_key(study_config(syn)) == study_key(study_config(syn))


def test_val_split_on_request_warns_that_it_is_the_selection_set(address, tmp_path, capsys):
    child = {"task": "mnist1d", "steps": 5, "train_size": 200, "val_size": 200, "device": "cpu", "threads": 1,
             "data_dir": str(tmp_path / "data")}
    run = make_run(tmp_path, address, child)
    code, out, err = cli(capsys, "significance", run, "--candidates", "x", "--baselines", "relu", "--seeds", 1,
                         "--split", "val")
    assert code == 0, err
    assert any(line.startswith("warning: verdicts on the val split") and "selection bias" in line
               for line in err.splitlines())
    flat = " ".join(out.split())
    assert "1 comparison over 1 seed on the val split" in flat
    assert "Split: val, the held-out set the search scored and selected its candidates on" in flat
    with Store.open(run, readonly=True) as store:
        [analysis] = store.significance()
        assert {r["metrics"]["split"] for r in store.retrainings()} == {"val"}
    assert analysis["child"]["split"] == "val" and analysis["overrides"] == ["child.split=val"]
    assert analysis["study"] == study_key(config_from_dict({"seed": 5, "child": child}))


def synthetic_run(folder: Path, address: str, name: str = "syn", delay_s: float = 0.0) -> Path:
    return make_run(folder, address, {"task": "synthetic", "noise": 0.01, "delay_s": delay_s}, name=name)


ARGS = ["--candidates", "x * sigmoid(beta * x),tanh(x)", "--baselines", "relu(x)", "--seeds", "6"]


def test_a_killed_test_resumes_without_redoing_finished_retrainings(address, tmp_path, capsys, monkeypatch):
    run = synthetic_run(tmp_path, address, delay_s=0.2)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    killed = subprocess.run([sys.executable, str(REPO / "tests" / "killpoints.py"), "retrained:5", "significance",
                             str(run), *ARGS], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Store.open(run, readonly=True) as store:
        before = store.retrainings()
        assert store.significance() == []
    assert len(before) == 5

    dispatched = []
    submit = ChildPool.submit
    monkeypatch.setattr(ChildPool, "submit", lambda pool, key, activation, seed, *a: dispatched.append(
        (activation, seed)) or submit(pool, key, activation, seed, *a))
    code, out, err = cli(capsys, "significance", run, *ARGS)
    assert code == 0, err
    assert "18 re-trainings: 5 from earlier sessions, 13 trained now" in out
    number = {retrain_seed(5, n): n for n in range(6)}
    redone = {(a, number[seed]) for a, seed in dispatched}
    assert len(dispatched) == len(redone) == 13
    assert not redone & {(r["activation"], r["seed_number"]) for r in before}
    with Store.open(run, readonly=True) as store:
        after = store.retrainings()
        [analysis] = store.significance()
    assert len(after) == 18
    kept = {(r["activation"], r["seed_number"]): r for r in after}
    for row in before:  # recorded results survive unchanged
        assert kept[row["activation"], row["seed_number"]] == row
    assert len(analysis["comparisons"]) == 2 and analysis["seeds"] == 6

    # a third time: everything is there, nothing is trained, the same verdicts come back
    dispatched.clear()
    code, out, err = cli(capsys, "significance", run, *ARGS)
    assert code == 0 and dispatched == [] and "18 re-trainings: 18 from earlier sessions, 0 trained now" in out
    assert "note:" not in out
    # fewer seeds than are stored: the test says what it leaves out, as it becomes the study's current analysis
    code, out, err = cli(capsys, "significance", run, *[a if a != "6" else "4" for a in ARGS])
    assert code == 0 and dispatched == [] and "note: 6 seeds of these functions are stored" in out
    assert "--seeds 6 uses them all" in out


def test_other_child_settings_are_a_separate_study(address, tmp_path, capsys):
    run = synthetic_run(tmp_path, address)
    assert cli(capsys, "significance", run, *ARGS)[0] == 0
    # no held-out data on the synthetic task: --split changes nothing, so it is the same study, and says so
    code, out, err = cli(capsys, "significance", run, *ARGS, "--split", "val")
    assert code == 0 and "18 from earlier sessions, 0 trained now" in out
    assert "note: --split val has no effect: the synthetic task has no held-out split to choose" in err
    code, out, err = cli(capsys, "significance", run, *ARGS, "--set", "child.noise=0.05")
    assert code == 0, err
    assert "0 from earlier sessions, 18 trained now" in out
    with Store.open(run, readonly=True) as store:
        studies = store.studies()
        analyses = store.significance()
    assert len(studies) == 2 and studies[1]["overrides"] == ["child.noise=0.05"]
    assert [a["study"] for a in analyses] == [s["key"] for s in studies]
    home = study_key(config_from_dict({"seed": 5, "child": {"task": "synthetic", "noise": 0.01}}))
    assert studies[0]["key"] == home
    first = {(r["activation"], r["seed_number"]): r["score"] for r in store_rows(run, home)}
    other = {(r["activation"], r["seed_number"]): r["score"] for r in store_rows(run, studies[1]["key"])}
    assert first.keys() == other.keys() and first != other  # same seeds, other settings, other scores


def store_rows(run: Path, study: str) -> list[dict]:
    with Store.open(run, readonly=True) as store:
        return store.retrainings(study)


def test_too_few_seeds_warns_in_one_line(address, tmp_path, capsys):
    run = synthetic_run(tmp_path, address)
    code, out, err = cli(capsys, "significance", run, "--candidates", "x * sigmoid(beta * x)", "--baselines",
                         "relu(x),x", "--seeds", "3")
    assert code == 0
    [warning] = err.strip().splitlines()
    assert warning.startswith("warning: 3 seeds can give no verdict for 2 comparisons") and "--seeds 7" in warning
    assert "on the synthetic task (no held-out split)" in out and "Split: none" in out
    assert "With 2 comparisons a verdict needs at least 7 seeds" in " ".join(out.split())
    with Store.open(run, readonly=True) as store:
        [analysis] = store.significance()
    assert [c["verdict"] for c in analysis["comparisons"]] == ["no evidence", "no evidence"]
    # swish (the synthetic target) beat both on every seed: three seeds are too few to tell
    assert analysis["wins"]["cells"]["x * sigmoid(beta * x)"] == {"relu(x)": [3, 0, 0], "x": [3, 0, 0]}


def test_a_broken_setup_stops_before_recording_failures(address, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    # one child at a time: none is in flight when the third failure stops the study, so none is cancelled (Ray 2.60's
    # driver can abort when a cancel meets a task being handed to a worker: "Tried to complete task that was not
    # pending", which took a test process down)
    run = make_run(tmp_path, address, {"task": "mnist1d", "steps": 5, "data_dir": str(blocker / "data")},
                   max_in_flight=1)
    code, out, err = cli(capsys, "significance", run, "--candidates", "tanh(x)", "--baselines", "relu,gelu",
                         "--seeds", "2")
    assert code == 2
    assert "the first 3 re-trainings all failed with: UserError: child.data_dir" in err
    assert "fix it and run the same command again" in err
    # the same within a run's confirmation: `actsearch run` again is refused (the run exists), resume goes on
    from search.analysis.significance import run_significance
    with pytest.raises(UserError, match=f"fix it and continue with `actsearch resume {run}`"):
        run_significance(run, ["tanh(x)"], ["relu"], 2, out=io.StringIO(), confirmation=True)
    with Store.open(run, readonly=True) as store:
        assert store.retrainings() == []  # a fixed setup trains them all next time


def test_a_test_and_a_search_cannot_drive_one_run_at_once(address, tmp_path, capsys):
    from search.loop.rundir import run_lock

    run = synthetic_run(tmp_path, address)
    with run_lock(run):
        code, _, err = cli(capsys, "significance", run, *ARGS)
    assert code == 2 and "is being run by another process right now" in err


def test_ctrl_c_stops_with_exit_130_and_the_same_command_continues(address, tmp_path, capsys):
    import time

    run = synthetic_run(tmp_path, address, delay_s=0.5)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    test = subprocess.Popen([sys.executable, "-m", "search.cli", "significance", str(run), *ARGS], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and test.poll() is None:
            with Store.open(run, readonly=True) as store:
                if len(store.retrainings()) >= 2:
                    break
            time.sleep(0.1)
        test.send_signal(signal.SIGINT)
        out, err = test.communicate(timeout=60)
    finally:
        if test.poll() is None:
            test.kill()
    assert test.returncode == 130, err
    assert "run the same command again to continue" in err
    with Store.open(run, readonly=True) as store:
        stopped = len(store.retrainings())
        assert 2 <= stopped < 18 and store.significance() == []  # no verdicts from half the data
    code, out, err = cli(capsys, "significance", run, *ARGS)
    assert code == 0, err
    assert f"18 re-trainings: {stopped} from earlier sessions, {18 - stopped} trained now" in out


def test_the_wins_table_writes_functions_as_every_display_does_and_csv_keeps_their_texts():
    """The significance table above it shows ``x * sigmoid(sinh(x))``; the wins table showed ``sigmul(sinh(x), x)``
    for the same function, and a baseline expression as its raw text."""
    from search.analysis.significance import wins_text

    wins = {"unit": "seed", "candidates": ["sigmul(sinh(x), x)"], "baselines": ["relu", "sigmul(beta * x, x)"],
            "cells": {"sigmul(sinh(x), x)": {"relu": [8, 0, 0], "sigmul(beta * x, x)": [1, 2, 5]}}}
    header, _, row = wins_text(wins).splitlines()
    assert header.split() == ["candidate", "relu", "x", "*", "sigmoid(beta", "*", "x)", "=", "swish"]
    assert row.split() == ["x", "*", "sigmoid(sinh(x))", "8/0/0", "1/2/5"]
    assert wins_text(wins, "csv").splitlines() == ['candidate,relu,"sigmul(beta * x, x)"',
                                                   '"sigmul(sinh(x), x)",8/0/0,1/2/5']


def test_csv_and_json_comparisons_name_each_function_by_its_text_and_its_simplest_text():
    """``top --format json`` gives each function's simplest text; significance's json and csv gave only the canonical
    text (``sigmul(sinh(x), x)``, not ``x * sigmoid(sinh(x))``)."""
    import csv
    import io
    import json

    from search.analysis.significance import significance_table

    comparison = {"candidate": "sigmul(sinh(x), x)", "baseline": "sigmul(beta * x, x)", "n": 8, "candidate_mean": 0.9,
                  "baseline_mean": 0.89, "mean_diff": 0.01, "ci_low": 0.0, "ci_high": 0.02, "wilcoxon_p": 0.04,
                  "wilcoxon_p_holm": 0.04, "sign_p": 0.07, "wins": 6, "ties": 0, "losses": 2, "verdict": "better"}
    (row,) = json.loads(significance_table([comparison], "json"))
    assert row["candidate"] == "sigmul(sinh(x), x)" and row["candidate_simplest"] == "x * sigmoid(sinh(x))"
    assert row["baseline_simplest"] == "x * sigmoid(beta * x)"
    (row,) = csv.DictReader(io.StringIO(significance_table([comparison], "csv")))
    assert row["candidate"] == "sigmul(sinh(x), x)" and row["candidate simplest"] == "x * sigmoid(sinh(x))"
    assert "candidate simplest" not in significance_table([comparison], "table")


def test_top_k_takes_the_k_best_children_that_trained_to_the_end():
    """``--top K`` of a run with early stopping tested fewer than K functions: the K best by reward less the stopped
    ones, without a word."""
    from search.analysis.significance import choose_candidates
    from search.loop.config import config_from_dict
    from search.loop.local import search_local

    config = config_from_dict({"seed": 1, "space": {"core_units": 1}, "controller": {"kind": "random"},
                               "child": {"task": "synthetic", "noise": 0.02, "steps": 500},
                               "fidelity": {"rungs": [50, 150], "eta": 3}, "budget": {"children": 60}})
    store = search_local(config, capacity=4)["store"]
    ranked = store.top(store.evaluated())
    ok = [r["text"] for r in ranked if r["status"] == "ok"]
    k = len(ok) - 1  # 13 here
    assert k >= 5 and any(r["status"] == "stopped" for r in ranked[:k])
    assert choose_candidates(store, k) == ok[:k]


def test_csv_and_json_print_the_data_alone_on_stdout(address, tmp_path, capsys):
    """`--format json > sig.json` wrote a progress line, prose, two JSON arrays and a paragraph: no JSON reader took
    it. Now stdout is one JSON document (or one CSV table) and the rest goes to stderr."""
    import csv
    import io
    import json

    run = synthetic_run(tmp_path, address)
    code, out, err = cli(capsys, "significance", run, *ARGS, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["seeds"] == 6 and len(data["comparisons"]) == 2 and data["wins"][0]["candidate"]
    assert {c["baseline"] for c in data["comparisons"]} == {"relu(x)"} and "Statistics:" in err
    code, out, err = cli(capsys, "significance", run, *ARGS, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2 and [r["baseline"] for r in rows] == ["relu(x)"] * 2
