"""The same config and seed give the same search on 1, 2 or 4 workers, whatever order the children end in, and across a
SIGKILL and resume (deterministic scheduling, search/loop/schedule.py); asynchronous scheduling stays available."""
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from search.cli import main
from search.loop.store import Store

BUDGET = 24


def write(folder: Path, name: str, address: str, workers: int, **changes) -> Path:
    raw = {"seed": 5, "space": {"core_units": 1}, "controller": {"kind": "ppo", "batch_size": 4},
           "child": {"task": "synthetic", "noise": 0.03, "delay_s": 0.06, "delay_spread": 0.9},
           "budget": {"children": BUDGET},
           "resources": {"address": address, "cpus_per_child": 0.5, "max_in_flight": workers}}
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def story(run_dir: Path) -> dict:
    """What a search did: every proposal, its status, reward and child seed; the rewards' delivery order; the top."""
    with Store.open(run_dir, readonly=True) as store:
        return {"candidates": [(c["index"], c["tokens"], c["status"], c["reward"], c["seed"])
                               for c in store.candidates()],
                "told": store.told(), "updates": [u["consumed"] for u in store.updates()],
                "top": [(r["text"], r["reward"]) for r in store.top(10)],
                "rungs": sorted((r["candidate"], r["rung"], r["score"], r["go_on"]) for r in store.rungs())}


def run(folder: Path, config: Path, name: str) -> dict:
    assert main(["run", str(config), "--name", name, "--results", str(folder)]) == 0
    return story(folder / name)


@pytest.mark.parametrize("changes", [{}, {"fidelity": {"rungs": [100, 300]}}], ids=["plain", "early-stopping"])
def test_one_two_or_four_workers_make_the_same_search(address, tmp_path, capsys, changes):
    stories = [run(tmp_path, write(tmp_path, f"w{n}", address, n, **changes), f"w{n}") for n in (1, 2, 4)]
    capsys.readouterr()
    assert stories[0]["candidates"] and stories[1] == stories[0] and stories[2] == stories[0]
    if changes:
        assert any(not go_on for *_, go_on in stories[0]["rungs"])  # it did stop children, in the same order


def test_a_table_replay_is_the_same_on_one_or_four_workers(address, tmp_path, capsys):
    from search.analysis.table_build import build_table

    space = {"core_units": 1, "unary": ["x", "relu", "tanh", "sigmoid", "sin", "exp"], "binary": ["add", "mul", "max"]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "space": space, "controller": {"kind": "exhaustive"}, "child": {"task": "synthetic", "noise": 0.05},
        "budget": {"children": 1000}, "resources": {"address": address}}))
    assert build_table(str(tmp_path / "t.yaml"), 2, tmp_path / "t.json", results=tmp_path / "tables",
                       stream=io.StringIO()) is not None
    replay = {"space": space, "controller": {"kind": "evolution"}, "child": {"task": "table",
                                                                              "table": str(tmp_path / "t.json")}}
    one = run(tmp_path, write(tmp_path, "r1", address, 1, **replay), "r1")
    four = run(tmp_path, write(tmp_path, "r4", address, 4, **replay), "r4")
    capsys.readouterr()
    assert one == four


def test_a_sigkill_and_resume_make_the_same_search(address, tmp_path, capsys):
    reference = run(tmp_path, write(tmp_path, "ref", address, 1), "ref")
    config = write(tmp_path, "killed", address, 4)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.run([sys.executable, str(REPO / "tests" / "killpoints.py"), "told:9", "run", str(config),
                              "--name", "killed", "--results", str(tmp_path)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=180)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert main(["resume", str(tmp_path / "killed")]) == 0
    capsys.readouterr()
    assert story(tmp_path / "killed") == reference


def test_asynchronous_scheduling_asks_for_free_workers(address, tmp_path, capsys):
    config = write(tmp_path, "async", address, 2, schedule={"mode": "asynchronous"})
    result = run(tmp_path, config, "async")
    capsys.readouterr()
    assert len([c for c in result["candidates"] if c[2] not in ("screened", "duplicate")]) == BUDGET
