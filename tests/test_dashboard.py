"""``actsearch dashboard`` as a person uses it: started on a folder whose search is still running, the page loaded in
a real headless Chromium (skipped, with the reason, where none is installed: ``make browser-test`` installs it),
refreshed while children arrive; and its bad input: no runs, a damaged store among good ones, a port in use, Ctrl-C."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO
from conftest import run_cli as cli

from search.language.expression import Expression
from search.loop.config import BudgetSettings, config_from_dict
from search.loop.rundir import create_run
from search.loop.store import Store

ACTSEARCH = [sys.executable, "-m", "search.cli"]
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _ask(store: Store, texts: list[str]) -> None:
    store.record_ask(len(texts), [{"index": i, "tokens": ["x"] * 5, "text": t,
                                   "fingerprint": Expression.parse(t).fingerprint(), "logp": None,
                                   "policy_version": 0, "proposal": {}} for i, t in enumerate(texts)])


def finished_run(folder: Path, name: str = "done", minimised: str | None = None) -> Path:
    """A run whose store holds three trained children and a significance study of the best against relu; with
    ``minimised``, a user child's run that minimises that metric (its children's values 1.2, 1.5 and 2.0)."""
    run = folder / name
    task = "children:train" if minimised else "synthetic"
    rewards = {"metric": minimised, "minimize": True, "failed": -10, "screened": -10} if minimised else {}
    create_run(run, config_from_dict({"seed": 1, "child": {"task": task}, "budget": {"children": 3},
                                      "rewards": rewards}))
    texts = ["sigmul(beta * x, x)", "relu(x)", "tanh(x)"]
    with Store.open(run) as store:
        session = store.start_session({})
        _ask(store, texts)
        for i, value in enumerate((1.2, 1.5, 2.0) if minimised else (0.9, 0.8, 0.5)):
            store.record_launch(i, seed=i)
            store.record_result(i, "ok", -value if minimised else value, metrics={minimised or "accuracy": value})
        store.record_study("s1", {"task": task}, ["child.options.steps=1200"])
        store.record_significance("s1", [texts[0]], ["relu"], 8, [
            {"candidate": texts[0], "baseline": "relu", "mean_diff": 0.02, "ci_low": 0.01, "ci_high": 0.03,
             "verdict": "better", "wilcoxon_p_holm": 0.008, "n": 8, "diffs": [0.02] * 8}], {})
        store.end_session(session, "finished", 0.1)
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ctrl_c_default() -> None:
    """Ctrl-C as a terminal delivers it, even when the tests run in the background (where a shell starts them with
    SIGINT ignored, which a child inherits, and Python then installs no KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_dashboard(*paths, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([*ACTSEARCH, "dashboard", *map(str, paths), "--port", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_default)
    line = proc.stdout.readline()
    assert f"http://127.0.0.1:{port}/" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as res:
        body = res.read().decode("utf-8")
    return json.loads(body) if path.startswith("/api") else body


# ---------------------------------------------------------------- bad input

def test_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = cli(capsys, "dashboard", tmp_path / "missing")
    assert code == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1


def test_an_empty_folder_is_watched_runs_appear_as_they_start_and_go_when_removed(tmp_path):
    """A newcomer opens the dashboard first, then starts a run; a run deleted from the folder leaves the page."""
    results = tmp_path / "results"
    results.mkdir()
    port = free_port()
    proc = start_dashboard(results, port=port)
    try:
        assert get(port, "/api/runs") == []
        finished_run(results)
        assert [r["name"] for r in get(port, "/api/runs")] == ["done"]
        shutil.rmtree(results / "done")
        assert get(port, "/api/runs") == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_damaged_store_is_shown_as_damaged_and_the_others_work_a_port_in_use_is_refused(tmp_path):
    finished_run(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "done", broken)
    (broken / "store.sqlite").write_bytes(b"this is no database" * 100)
    port = free_port()
    proc = start_dashboard(tmp_path, port=port)
    try:
        runs = {r["name"]: r for r in get(port, "/api/runs")}
        assert runs["broken"]["state"] == "damaged" and "not a database" in runs["broken"]["error"]
        done = runs["done"]
        assert (done["state"], done["done"], done["budget"]) == ("finished", 3, 3)
        assert done["best"]["readable"] == "x * sigmoid(beta * x)" and done["best"]["equals"] == "swish"
        assert done["best"]["typeset"] == "x\u00b7\u03c3(\u03b2x)"
        run = get(port, "/api/run?name=done")
        assert [s["rank"] for s in run["shapes"]] == [1, 2, 3] and len(run["shapes"][0]["f"]) == 81
        assert run["significance"][0]["comparisons"][0]["verdict"] == "better"
        assert get(port, "/api/run?name=broken")["state"] == "damaged"
        page = get(port, "/")
        assert "/api/runs" in page and not re.search(r"(src|href)=\"?(https?:)?//", page)  # no network: no CDN

        finished_run(tmp_path, "later")  # a run started after the dashboard appears at the next poll
        assert "later" in {r["name"] for r in get(port, "/api/runs")}

        again = subprocess.run([*ACTSEARCH, "dashboard", str(tmp_path), "--port", str(port)], cwd=REPO,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
        assert f"--port {port}: already in use" in again.stderr
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dashboard stopped" in err and "Traceback" not in err


def test_the_state_of_a_run_comes_from_its_sessions_and_lock(tmp_path):
    from search.analysis.dashboard import lock_held, run_state
    from search.loop.rundir import run_lock

    run = finished_run(tmp_path)
    assert lock_held(run) is False
    with run_lock(run):
        assert lock_held(run) is True
        assert run_state([{"ended_at": 1.0, "outcome": "finished"}], lock_held(run)) == "running"
    assert run_state([], False) == "new"
    for ended in ("exhausted", "stalled"):  # the search reached its end as surely as a spent budget: not "stopped"
        assert run_state([{"ended_at": 1.0, "outcome": ended}], False) == "finished"
    assert run_state([{"ended_at": 1.0, "outcome": "interrupted"}], False) == "stopped"
    assert run_state([{"ended_at": None, "host": socket.gethostname(), "pid": 2 ** 22 + 7}], False) == "stopped"


def test_a_minimised_metric_is_shown_as_itself_with_differences_in_its_units(tmp_path):
    """A run that minimises val_loss showed "best reward -1.2", and its forest plot differences with the wrong sign."""
    from search.analysis.dashboard import Board

    run = finished_run(tmp_path, "lm", minimised="val_loss")
    board = Board({"lm": run, "done": finished_run(tmp_path)})
    lm, done = board.runs()
    assert (lm["metric"], lm["lower"], lm["best"]["reward"]) == ("val_loss", True, 1.2)
    assert [p[1] for p in lm["curve"]] == [1.2, 1.2]
    assert (done["metric"], done["lower"], done["best"]["reward"]) == ("reward", False, 0.9)
    detail = board.run("lm")
    assert [c[1] for c in detail["course"]] == [1.2, 1.5, 2.0] and [c[3] for c in detail["course"]] == [1.2] * 3
    [row] = detail["significance"][0]["comparisons"]
    assert (row["mean"], row["low"], row["high"], row["lower"]) == (-0.02, -0.03, -0.01, True)


def test_the_board_follows_a_resume_and_a_replaced_run_and_counts_children_only(tmp_path):
    """What an audit saw on a dashboard left open: the budget of the first read after a resume raised it ("70 / 40
    children"), a run made again under the same name drawn with the old one's course, duplicates counted in the rate
    (11,269/min against 3,205), every proposed candidate "in flight", and part-trained (stopped) scores as the best."""
    from search.analysis.dashboard import Board
    from search.loop.rundir import run_config, write_run_config

    run = finished_run(tmp_path)
    board = Board({"done": run}, [tmp_path])
    [card] = board.runs()
    assert (card["budget"], card["done"], card["best"]["reward"]) == (3, 3, 0.9)
    with Store.open(run) as store:  # a resume: budget 7, two new children, a duplicate, a stopped child scoring high
        write_run_config(run, dataclasses.replace(run_config(run, store), budget=BudgetSettings(children=7)))
        store.start_session({})
        texts = ["sin(x)", "x * sigmoid(beta * x)", "cos(x)", "sinh(x)", "atan(x)"]
        store.record_ask(5, [{"index": 3 + i, "tokens": ["x"] * 5, "text": t, "fingerprint": f"fp{i}",
                              "logp": None, "policy_version": 0, "proposal": {}} for i, t in enumerate(texts)])
        now = time.time()
        for i, (status, value) in enumerate((("ok", 0.6), ("duplicate", 0.9), ("stopped", 0.95)), 3):
            if status != "duplicate":
                store.record_launch(i, seed=i)
            store.record_result(i, status, value, metrics={"accuracy": value, "rung_step": 50}, at=now)
        store.record_launch(6, seed=6)  # index 6 is training, 7 only proposed
    card = board.runs()[0]
    assert (card["budget"], card["done"], card["running"]) == (7, 5, 1)
    assert card["best"]["reward"] == 0.9 and [p[1] for p in card["curve"]][-1] == 0.9  # not the stopped 0.95
    detail = board.run("done")
    assert [c[0] for c in detail["course"]] == [0, 1, 2, 3, 5]  # children: no duplicate
    assert [c[3] for c in detail["course"]][-1] == 0.9
    assert next(f for f in detail["shapes"] if f["reward"] == 0.95)["stopped_at"] == 50

    shutil.rmtree(run)  # made again under the same name: another run
    time.sleep(0.01)
    finished_run(tmp_path)
    card = board.runs()[0]
    assert (card["budget"], card["done"]) == (3, 3) and len(board.run("done")["course"]) == 3


def test_a_held_run_after_its_search_is_shown_re_training_or_confirming(tmp_path):
    """A significance test on a finished run showed "running, 16 in flight"; a run's confirm stage, "running"."""
    from search.analysis.dashboard import Board
    from search.loop.rundir import run_lock

    run = finished_run(tmp_path)
    board = Board({"done": run})
    with run_lock(run):  # `actsearch significance` holds it: the last session has ended
        assert board.runs()[0]["state"] == "re-training"
    with Store.open(run) as store:
        store.start_session({})  # a session goes on past its budget (3 of 3 children): its confirmation
    with run_lock(run):
        assert board.runs()[0]["state"] == "confirming"
    assert board.runs()[0]["state"] == "stopped"  # no lock, a session without an end whose process is gone


def test_a_run_of_re_trainings_only_is_shown_as_such_not_as_a_new_search(tmp_path):
    """``table build --functions`` records re-trainings in a run that never searched: its card said "new, 0 / 10000
    children"."""
    from search.analysis.dashboard import Board

    run = tmp_path / "named"
    create_run(run, config_from_dict({"seed": 1, "child": {"task": "synthetic"}}))
    with Store.open(run) as store:
        store.record_study("s1", {"task": "synthetic"}, [])
        for seed in range(3):
            store.record_retraining("s1", "relu(x)", seed, seed, "ok", 0.5, {"accuracy": 0.5})
    board = Board({"named": run, "done": finished_run(tmp_path)})
    named, done = board.runs()
    assert (named["state"], named["retrainings"], named["done"], named["proposals"]) == ("re-trained", 3, 0, 0)
    assert done["state"] == "finished" and done["retrainings"] == 0
    # a study writes no journal event: the board still sees its next re-training and its analysis at the next poll
    with Store.open(run) as store:
        store.record_retraining("s1", "tanh(x)", 0, 0, "ok", 0.4, {"accuracy": 0.4})
        store.record_significance("s1", ["tanh(x)"], ["relu(x)"], 1, [
            {"candidate": "tanh(x)", "baseline": "relu(x)", "mean_diff": -0.1, "ci_low": -0.2, "ci_high": 0.0,
             "verdict": "no evidence", "wilcoxon_p_holm": 1.0, "n": 1, "diffs": [-0.1]}], {})
    assert board.runs()[0]["retrainings"] == 4
    assert [c["candidate"] for c in board.run("named")["significance"][0]["comparisons"]] == ["tanh(x)"]


# ---------------------------------------------------------------- in a browser, while a search runs

def _dom(url: str, width: int, screenshot: Path | None = None) -> tuple[str, str]:
    """The page's DOM after its script ran a few refreshes (virtual time), and Chromium's log (console included)."""
    args = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},1300",
            "--virtual-time-budget=7000", "--enable-logging=stderr", "--v=0"]
    if screenshot:
        args += [f"--screenshot={screenshot}", "--hide-scrollbars"]
    else:
        args += ["--dump-dom"]
    done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120)
    return done.stdout, done.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and ("rror" in line or "Uncaught" in line)]


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine: `make browser-test` installs it (as root)")
def test_the_page_follows_a_running_search_in_a_browser(tmp_path):
    finished_run(tmp_path)
    config = tmp_path / "slow.yaml"
    config.write_text("seed: 0\nspace: {core_units: 1}\ncontroller: {kind: random}\n"
                      "child: {task: synthetic, delay_s: 0.4}\nbudget: {children: 80}\n"
                      "resources: {address: '', cpus_per_child: 1}\nconfirm: {enabled: false}\n")
    search = subprocess.Popen([*ACTSEARCH, "run", str(config), "--name", "live", "--results", str(tmp_path)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = free_port()
    dashboard = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # the search has trained a first child
            if (tmp_path / "live" / "store.sqlite").exists():
                with Store.open(tmp_path / "live", readonly=True) as store:
                    if store.evaluated() >= 1:
                        break
            assert search.poll() is None, search.stdout.read()
            time.sleep(0.5)
        dashboard = start_dashboard(tmp_path, port=port)
        first, log = _dom(f"http://127.0.0.1:{port}/#run=live", 1400)
        assert not _console_errors(log), _console_errors(log)
        assert re.search(r'<div id="errors"></div>', first), first[:2000]
        assert int(re.search(r'data-refreshes="(\d+)"', first).group(1)) >= 2  # it refreshed by itself
        assert 'class="state running"' in first and 'id="course"' in first and 'id="shapes"' in first
        seen = int(re.search(r'data-run="live".*?<span class="done">(\d+)</span>', first, re.S).group(1))
        time.sleep(4)
        second, log = _dom(f"http://127.0.0.1:{port}/#run=live", 800)
        later = int(re.search(r'data-run="live".*?<span class="done">(\d+)</span>', second, re.S).group(1))
        assert later > seen, (seen, later)  # new children on the page
        assert second.count('class="child"') >= later and second.count('class="f"') >= 1  # dots and shapes
        assert 'id="compare"' in second  # two runs: their best-so-far curves on one plot

        done, log = _dom(f"http://127.0.0.1:{port}/#run=done", 1400)
        assert not _console_errors(log) and 'class="forest"' in done and "better" in done  # the verdict picture
        assert "x\u00b7\u03c3(\u03b2x)" in done and "sigmul" not in done
    finally:
        if dashboard is not None:
            dashboard.send_signal(signal.SIGINT)
            dashboard.communicate(timeout=30)
        output, _ = search.communicate(timeout=180)
    with Store.open(tmp_path / "live", readonly=True) as store:  # the watched search is complete and consistent
        assert search.returncode == 0 and store.evaluated() == 80 and store.audit() == [], output[-3000:]
