"""The driver dies at the worst moments (SIGKILL at named points through tests/killpoints.py, or Ctrl-C) and the run
resumes.

Each case runs the driver as a subprocess connected to this module's Ray instance, kills it at one point of a
candidate's life, then resumes in this process and checks the store: exactly the budgeted children, none recorded
twice, nothing recorded before the crash lost or changed, every reward told to the controller once, the update count
matching the rewards told. With one child at a time the search is deterministic, so the resumed run must also equal an
uninterrupted one candidate for candidate.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from search.cli import main
from search.loop.rundir import CHECKPOINT_DIR, CHECKPOINT_FILE
from search.loop.store import CHILD_STATUSES, FINAL_STATUSES, Store

BUDGET = 24
BATCH = 4  # PPO updates on every 4th reward told: a handful of updates (and checkpoints) per run
from conftest import REPO


def write_config(folder: Path, address: str, in_flight: int = 1, delay: float = 0.0) -> Path:
    config = {"seed": 3, "space": {"core_units": 1}, "controller": {"kind": "ppo", "batch_size": BATCH},
              "child": {"task": "synthetic", "noise": 0.02, "delay_s": delay}, "budget": {"children": BUDGET},
              "resources": {"address": address, "cpus_per_child": 1, "max_in_flight": in_flight}}
    path = folder / f"crash-{in_flight}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def driver(config: Path, results: Path, name: str, kill_at: str = "", resume: bool = False) -> subprocess.Popen:
    """The driver in its own process, as a user starts it, dying at ``kill_at`` (see tests/killpoints.py)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    argv = ["resume", str(results / name)] if resume else \
        ["run", str(config), "--name", name, "--results", str(results)]
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "killpoints.py"), kill_at, *argv], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def torn_checkpoints(run_dir: Path) -> list[Path]:
    return list((run_dir / CHECKPOINT_DIR).glob(f".{CHECKPOINT_FILE}.tmp*"))


def killed(process: subprocess.Popen) -> None:
    out, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, f"driver was not killed (rc {process.returncode}):\n{out}\n{err}"


def resume_here(run_dir: Path, capsys) -> str:
    code = main(["resume", str(run_dir)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def results_of(run_dir: Path) -> dict[int, dict]:
    with Store.open(run_dir, readonly=True) as store:
        return {c["index"]: c for c in store.candidates(FINAL_STATUSES)}


def story(run_dir: Path) -> list[tuple]:
    """What a run did, candidate by candidate (what an uninterrupted run must match)."""
    with Store.open(run_dir, readonly=True) as store:
        return [(c["index"], c["tokens"], c["status"], c["reward"], c["seed"]) for c in store.candidates()]


def check_recovered(run_dir: Path, before: dict[int, dict]) -> None:
    """The store after a resume: consistent, complete, and nothing recorded before the crash lost or changed."""
    with Store.open(run_dir, readonly=True) as store:
        assert store.audit() == []
        assert store.evaluated() == BUDGET
        assert store.open_candidates() == []
        told = store.told()
        assert len(told) == len(set(told)) == store.proposals()
        assert store.update_count() == len(told) // BATCH
        consumed = [i for update in store.updates() for i in update["consumed"]]
        assert len(consumed) == len(set(consumed)) == store.update_count() * BATCH
        after = {c["index"]: c for c in store.candidates(FINAL_STATUSES)}
        assert store.sessions()[-1]["outcome"] == "finished"
    for index, row in before.items():  # recorded results survive unchanged
        assert after[index] == row
    checkpoint = torch.load(run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["version"] == len(told) // BATCH
    assert not torn_checkpoints(run_dir)


@pytest.fixture(scope="module")
def reference(address, tmp_path_factory):
    """The story of an uninterrupted run of the crash config."""
    folder = tmp_path_factory.mktemp("reference")
    assert main(["run", str(write_config(folder, address)), "--name", "ref", "--results", str(folder)]) == 0
    return story(folder / "ref")


# Where a candidate's life is cut short: proposals only in memory; recorded but not judged; a child in flight; a
# result in hand but not written; written but not told to the controller; an update recorded without its checkpoint;
# halfway through writing a checkpoint.
KILL_POINTS = ["ask:3", "asked:5", "dispatch:4", "result:6", "told:7", "update:2", "checkpoint:2"]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_sigkill_then_resume_loses_nothing_and_repeats_nothing(address, reference, tmp_path, capsys, kill_at):
    config = write_config(tmp_path, address)
    results = tmp_path / "results"
    killed(driver(config, results, "run", kill_at=kill_at))
    run_dir = results / "run"
    before = results_of(run_dir)
    assert len(before) < len(reference)  # it really died mid-run
    if kill_at.startswith("checkpoint"):
        assert torn_checkpoints(run_dir)  # the torn file is there
    out = resume_here(run_dir, capsys)
    assert f"finished: {BUDGET}/{BUDGET} children" in out
    check_recovered(run_dir, before)
    assert story(run_dir) == reference  # the same candidates, rewards and seeds as if nothing had happened


def test_repeated_crashes_with_children_in_flight(address, tmp_path, capsys):
    """Three SIGKILLs in a row, two children at a time (so twins wait for each other), then a clean resume."""
    config = write_config(tmp_path, address, in_flight=2)
    results = tmp_path / "results"
    run_dir = results / "run"
    killed(driver(config, results, "run", kill_at="dispatch:3"))
    with Store.open(run_dir, readonly=True) as store:
        assert store.counts()["running"] >= 1  # children were in flight when it died
    killed(driver(config, results, "run", kill_at="checkpoint:2", resume=True))
    killed(driver(config, results, "run", kill_at="told:9", resume=True))
    before = results_of(run_dir)
    resume_here(run_dir, capsys)
    check_recovered(run_dir, before)
    with Store.open(run_dir, readonly=True) as store:
        assert len(store.sessions()) == 4


def wait_for_children(run_dir: Path, n: int, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with Store.open(run_dir, readonly=True) as store:
                if store.evaluated() >= n:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{n} children did not finish in {timeout} s")


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_and_resume_continues(address, reference, tmp_path, capsys, presses):
    """Ctrl-C stops gracefully (a second one at once); either way, resume finishes the same search."""
    config = write_config(tmp_path, address, delay=0.25)
    results = tmp_path / "results"
    run_dir = results / "run"
    process = driver(config, results, "run")
    wait_for_children(run_dir, 3, process)
    for _ in range(presses):
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "stopping" in out
    if presses == 1:
        assert f"continue with `actsearch resume {run_dir}`" in err
        with Store.open(run_dir, readonly=True) as store:
            assert store.sessions()[-1]["outcome"] == "interrupted"
            checkpoint = torch.load(run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE, weights_only=True)
            assert checkpoint["version"] == store.update_count()  # the stop checkpointed the controller
    before = results_of(run_dir)
    assert 3 <= len([r for r in before.values() if r["status"] in CHILD_STATUSES]) < BUDGET
    resume_here(run_dir, capsys)
    check_recovered(run_dir, before)
    assert story(run_dir) == reference


def fidelity_config(folder: Path, address: str) -> Path:
    path = write_config(folder, address)
    raw = yaml.safe_load(path.read_text())
    raw["fidelity"] = {"rungs": [100, 300], "eta": 3}
    path = folder / "fidelity.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def rung_story(run_dir: Path) -> list[tuple]:
    with Store.open(run_dir, readonly=True) as store:
        return sorted((r["candidate"], r["rung"], r["step"], r["score"], r["go_on"]) for r in store.rungs())


@pytest.fixture(scope="module")
def fidelity_reference(address, tmp_path_factory):
    """An uninterrupted run of the crash config with early stopping: (its story, its rung decisions)."""
    folder = tmp_path_factory.mktemp("fidelity-reference")
    assert main(["run", str(fidelity_config(folder, address)), "--name", "ref", "--results", str(folder)]) == 0
    return story(folder / "ref"), rung_story(folder / "ref")


@pytest.mark.parametrize("kill_at", ["rungs:5", "result:9", "told:11"])
def test_sigkill_with_early_stopping_keeps_every_rung_decision(address, fidelity_reference, tmp_path, capsys,
                                                               kill_at):
    """Early stopping's decisions survive a SIGKILL: a stopped child is not trained again, and the resumed run makes
    the very decisions an uninterrupted one makes."""
    reference, reference_rungs = fidelity_reference
    config = fidelity_config(tmp_path, address)
    results = tmp_path / "results"
    killed(driver(config, results, "run", kill_at=kill_at))
    run_dir = results / "run"
    before = results_of(run_dir)
    decided = rung_story(run_dir)
    assert decided and len(before) < len(reference)
    resume_here(run_dir, capsys)
    check_recovered(run_dir, before)
    assert story(run_dir) == reference
    assert set(decided) <= set(rung_story(run_dir)) and rung_story(run_dir) == reference_rungs
    with Store.open(run_dir, readonly=True) as store:
        stopped = store.candidates(["stopped"])
        assert stopped and all(c["attempts"] == 1 for c in stopped if c["index"] in before)


def test_a_sigterm_while_ray_starts_stops_as_a_ctrl_c_does(tmp_path):
    """``kill PID`` (SIGTERM, what a cluster or a service manager sends first) outside a loop's own stop handling, here
    while an embedded Ray starts: the command stops as after a Ctrl-C, exit 130 with how to continue, where it died
    by the signal's default (exit -15, no word) or Ray's handler (exit 15) before; nothing recorded is lost."""
    config = write_config(tmp_path, "", delay=0.25)
    results = tmp_path / "results"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(config), "--name", "run", "--results",
                                str(results)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    started = ""
    while not started.startswith("starting "):  # "created RUN", then "starting RUN: ...", then Ray starts
        started = process.stdout.readline()
        assert started, process.communicate(timeout=60)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, started + out + err
    assert f"continue with `actsearch resume {results / 'run'}`" in err, err
    with Store.open(results / "run", readonly=True) as store:
        assert store.audit() == []
