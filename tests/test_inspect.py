"""`actsearch top | plot | report | export` on real runs (synthetic task, tiny budgets), one Ray for the module."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, Page
from conftest import run_cli as cli

from search.cli import main
from search.language.expression import Expression
from search.language.kernel import activation_module
from search.loop.store import Store

BUDGET = 24
# expressions, because the synthetic task scores expressions only (relu(x) is ReLU, x the identity)
BASELINES = "relu(x),x"
SEEDS = 7  # seeds_needed(4 comparisons) = 7: a verdict is possible


def write_config(folder: Path, address: str, budget: int = BUDGET, delay_s: float = 0.0) -> Path:
    config = {"seed": 1, "space": {"core_units": 1}, "controller": {"kind": "ppo", "batch_size": 4},
              "child": {"task": "synthetic", "noise": 0.01, "delay_s": delay_s}, "budget": {"children": budget},
              "resources": {"address": address, "cpus_per_child": 1, "max_in_flight": 2}}
    path = folder / "inspect.yaml"
    path.write_text(yaml.safe_dump(config))
    return path




@pytest.fixture(scope="module")
def runs(address, tmp_path_factory):
    """Two copies of one finished search: ``plain`` as it is, ``tested`` with a significance test of its top 2."""
    folder = tmp_path_factory.mktemp("runs")
    assert main(["run", str(write_config(folder, address)), "--name", "plain", "--results", str(folder)]) == 0
    shutil.copytree(folder / "plain", folder / "tested")
    assert main(["significance", str(folder / "tested"), "--top", "2", "--baselines", BASELINES,
                 "--seeds", str(SEEDS), "--plot", str(folder / "significance.png")]) == 0
    return folder / "plain", folder / "tested"


def json_top(capsys, run: Path, k: int = 20) -> list[dict]:
    code, out, err = cli(capsys, "top", run, "-k", k, "--format", "json")
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------- top

def test_top_formats_agree_with_the_store(runs, capsys):
    plain, _ = runs
    rows = json_top(capsys, plain, k=5)
    with Store.open(plain, readonly=True) as store:
        expected = store.top(5)
    assert [(r["rank"], r["text"], r["reward"]) for r in rows] == \
        [(e["rank"], e["text"], e["reward"]) for e in expected]
    assert all(r["evaluations"] == 1 and r["mean"] == r["reward"] and r["sd"] is None for r in rows)
    assert all(r["statuses"] == {r["status"]: 1} and r["significance"] == [] for r in rows)

    code, out, _ = cli(capsys, "top", plain, "-k", 5)
    assert code == 0
    lines = out.splitlines()
    assert re.match(rf"{re.escape(str(plain))}: {BUDGET}/{BUDGET} children \(\d+ ok", lines[0])
    header = lines[lines.index("") + 1]
    assert header.split()[:6] == ["rank", "reward", "mean", "sd", "evals", "statuses"]
    table = lines[lines.index("") + 3:]
    assert len(table) == 5 and [line.split()[0] for line in table] == ["1", "2", "3", "4", "5"]
    assert rows[0]["simplest"] in table[0] and f"{rows[0]['reward']:.4f}" in table[0]  # display: the simplest text

    code, out, _ = cli(capsys, "top", plain, "-k", 5, "--format", "markdown")
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0].startswith("| rank | reward | mean | sd | evals |") and table[1].startswith("|---:|---:|")
    assert len(table) == 2 + 5 and rows[4]["simplest"] in table[-1]

    code, out, _ = cli(capsys, "top", plain, "-k", 5, "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [float(r["reward"]) for r in parsed] == [r["reward"] for r in rows]
    assert [r["expression"] for r in parsed] == [r["text"] for r in rows]  # csv and json keep the canonical text
    assert [(r["simplest"], r["equals"] or None) for r in parsed] == [(r["simplest"], r["equals"]) for r in rows]
    assert [(int(r["candidate"]), float(r["mean"])) for r in parsed] == [(r["candidate"], r["mean"]) for r in rows]


def test_top_shows_mean_spread_and_verdicts_after_significance(runs, capsys):
    _, tested = runs
    rows = json_top(capsys, tested, k=3)
    with Store.open(tested, readonly=True) as store:
        analysis = store.significance()[-1]
        retrained = store.retrainings()
    for row in rows[:2]:  # the two that were tested: the search's child plus SEEDS re-trainings each
        scores = [row["reward"]] + [r["score"] for r in retrained if r["activation"] == row["text"]]
        assert row["evaluations"] == len(scores) == 1 + SEEDS
        assert row["mean"] == pytest.approx(sum(scores) / len(scores))
        assert row["sd"] == pytest.approx(float(torch.tensor(scores, dtype=torch.float64).std()))
        assert sum(row["statuses"].values()) == 1 + SEEDS
        assert {c["baseline"] for c in row["significance"]} == {"relu(x)", "x"}
    assert rows[2]["evaluations"] == 1 and rows[2]["significance"] == []
    assert sorted(analysis["candidates"]) == sorted(r["text"] for r in rows[:2])

    code, out, _ = cli(capsys, "top", tested, "-k", 3)
    first = next(line for line in out.splitlines() if line.strip().startswith("1 "))
    verdicts = {c["baseline"]: c["verdict"] for c in rows[0]["significance"]}
    assert f"{rows[0]['mean']:.4f}" in first and f"{SEEDS + 1} ok" in first
    assert all(f"{word} " in first for word in verdicts.values())
    assert f"significance: {SEEDS} seeds, the run's child settings" in out


def test_top_reads_a_run_that_is_still_writing(address, tmp_path, capsys):
    """`top` in this process while `actsearch run` writes the store in another."""
    budget = 16
    results = tmp_path / "results"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(write_config(tmp_path, address, budget, 0.4)),
                               "--name", "live", "--results", str(results)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = results / "live"
    seen = []  # (children done, open candidates, rows) read while the driver was alive
    try:
        deadline = time.monotonic() + 120
        while driver.poll() is None and time.monotonic() < deadline:
            if (run / "store.sqlite").exists():
                code, out, err = cli(capsys, "top", run, "-k", 5)
                assert code == 0, err
                done, still_open = map(int, re.search(r": (\d+)/16 children.*, (\d+) open", out).groups())
                rows = json_top(capsys, run, k=5)
                rewards = [r["reward"] for r in rows]
                # `done` came from the earlier `top` call; more children may have finished since, never fewer
                assert rewards == sorted(rewards, reverse=True) and min(done, 5) <= len(rows) <= 5
                if driver.poll() is None:
                    seen.append((done, still_open, len(rows)))
            time.sleep(0.3)
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err
    assert any(0 < done < budget and still_open > 0 for done, still_open, _ in seen), seen
    with Store.open(run, readonly=True) as store:
        assert [r["text"] for r in json_top(capsys, run, k=5)] == [r["text"] for r in store.top(5)]


# ---------------------------------------------------------------- plot and report

def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def test_plots_are_png_files(runs, tmp_path, capsys):
    plain, _ = runs
    # `significance --plot` (in the fixture) drew its comparisons
    width, height = png_size((plain.parent / "significance.png").read_bytes())
    assert width > 500 and height > 4 * 100
    sizes = {}
    for top in (2, 8):
        code, out, err = cli(capsys, "plot", plain, "-o", tmp_path / f"top{top}.png", "--top", top)
        assert code == 0, err
        sizes[top] = png_size((tmp_path / f"top{top}.png").read_bytes())
    assert sizes[8][0] > sizes[2][0] and sizes[8][1] > sizes[2][1]  # 4 columns x 2 rows against 2 x 1
    code, _, err = cli(capsys, "plot", plain, "-o", tmp_path / "progress.png", "--progress")
    assert code == 0, err
    width, height = png_size((tmp_path / "progress.png").read_bytes())
    assert width > 500 and height > 500


def test_report_is_self_contained_and_shows_significance_when_present(runs, tmp_path, capsys):
    plain, tested = runs
    pages = {}
    for run in (plain, tested):
        code, _, err = cli(capsys, "report", run, "-o", tmp_path / f"{run.name}.html")
        assert code == 0, err
        pages[run.name] = (tmp_path / f"{run.name}.html").read_text()
    for name, text in pages.items():
        page = Page(text)
        assert "script" not in page.tags and "link" not in page.tags
        # the best function, progress and function plots; with a significance study, its comparison picture as well
        assert len(page.urls) == (4 if name == "tested" else 3) and 'alt="best function"' in text
        assert all(u.startswith("data:image/png;base64,") for u in page.urls)
        top = next(t for t in page.tables if t[0][:2] == ["rank", "expression"])
        assert top[0][:3] == ["rank", "expression", "reward"] and len(top) == 1 + 20
    assert "No significance results in this run yet" in pages["plain"]
    assert all('<div class="k">state</div><div class="v">finished</div>' in text for text in pages.values())

    page = Page(pages["tested"])
    with Store.open(tested, readonly=True) as store:
        comparisons = store.significance()[-1]["comparisons"]
    significance = next(t for t in page.tables if t[0][:2] == ["candidate", "baseline"])
    body = significance[1:]
    assert len(body) == len(comparisons) == 2 * 2
    assert [row[-1] for row in body] == [c["verdict"] for c in comparisons]
    wins = next(t for t in page.tables if t[0] == ["candidate", "relu(x)", "x"])
    assert len(wins) == 1 + 2
    assert f"{SEEDS} seeds, the run's child settings" in html.unescape(pages["tested"])
    assert "significance comparisons" not in pages["plain"]
    picture = re.search(r'<img alt="significance comparisons" src="data:image/png;base64,([^"]+)"', pages["tested"])
    width, height = png_size(base64.b64decode(picture.group(1)))
    assert width > 500 and height > 4 * 100  # one panel per comparison: 4 here


def test_the_report_says_a_run_stopped_before_its_end_and_how_to_continue_it(runs, tmp_path, capsys):
    """The report did not say whether the run it shows had finished."""
    plain, _ = runs
    stopped = tmp_path / "stopped"
    shutil.copytree(plain, stopped)
    with Store.open(stopped) as store:
        store.start_session({})  # a session that never ended: a driver killed mid-run
    code, _, err = cli(capsys, "report", stopped, "-o", tmp_path / "stopped.html")
    assert code == 0, err
    assert f"stopped before its end (continue: actsearch resume {stopped})" in (tmp_path / "stopped.html").read_text()


# ---------------------------------------------------------------- export

FRESH = textwrap.dedent("""
    import importlib.util, sys
    for name in ("search", "controller", "evaluator"):  # the exported file must not need actsearch
        sys.modules[name] = None
    import torch
    case = torch.load(sys.argv[1])
    spec = importlib.util.spec_from_file_location("exported", case["path"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    act = module.SearchedActivation()
    if case["state"]:
        act.load_state_dict(case["state"])
    torch.save([act(x) for x in case["inputs"]], sys.argv[2])
""")


def test_exported_rank_1_computes_what_the_searched_candidate_computes_in_a_fresh_interpreter(runs, tmp_path, capsys):
    plain, tested = runs
    rows = json_top(capsys, tested, k=1)
    path = tmp_path / "my_activation.py"
    code, out, err = cli(capsys, "export", tested, 1, "-o", path)
    assert code == 0, err
    source = path.read_text()
    assert f"f(x) = {rows[0]['text']}" in source
    assert f"run: {tested}" in source and "rank: 1" in source and f"reward: {rows[0]['reward']:.6g}" in source
    verdicts = {c["baseline"]: c["verdict"] for c in rows[0]["significance"]}
    for baseline, verdict in verdicts.items():
        assert f"vs {baseline}: {verdict} (" in source

    expr = Expression.parse(rows[0]["text"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = activation_module(expr, channels=6).to(device)  # fused by torch.compile on CUDA, the searched eager ops on CPU
    state = {}
    if expr.n_betas:
        with torch.no_grad():
            reference.beta.copy_(torch.linspace(0.5, 1.5, reference.beta.numel()).view_as(reference.beta))
        state = {k: v.cpu() for k, v in reference.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(32, 6, generator=gen) * 3, torch.randn(4, 6, 5, 5, generator=gen) * 3]
    case = tmp_path / "case.pt"
    torch.save({"path": str(path), "state": state, "inputs": inputs}, case)
    done = subprocess.run([sys.executable, "-c", FRESH, str(case), str(tmp_path / "out.pt")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outputs = torch.load(tmp_path / "out.pt")
    tol = dict(rtol=1e-4, atol=1e-5) if device == "cuda" else dict(rtol=1e-6, atol=1e-7)
    for x, y in zip(inputs, outputs):
        with torch.no_grad():
            torch.testing.assert_close(y, reference(x.to(device)).cpu(), **tol)

    # an expression instead of a rank: the run's record of that function, or a note that it never trained
    code, _, err = cli(capsys, "export", plain, rows[0]["text"], "-o", tmp_path / "by_text.py")
    assert code == 0, err
    assert "rank: 1" in (tmp_path / "by_text.py").read_text()
    code, _, err = cli(capsys, "export", plain, "cosh(x) - x", "-o", tmp_path / "other.py")
    assert code == 0, err
    assert "not trained by this run" in (tmp_path / "other.py").read_text()


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("argv, message", [
    (["top", "{missing}"], "no such folder"),
    (["top", "{plain}", "-k", "0"], "-k: must be a whole number from 1 to 100,000"),
    (["plot", "{missing}", "-o", "{tmp}/x.png"], "no such folder"),
    (["plot", "{plain}", "-o", "{tmp}/no/such/x.png"], "no such directory"),
    (["report", "{plain}", "-o", "{tmp}"], "is a directory"),
    (["export", "{plain}", "0", "-o", "{tmp}/a.py"], "rank 0: out of range"),
    (["export", "{plain}", "999", "-o", "{tmp}/a.py"], "rank 999: out of range"),
    (["export", "{plain}", "foo(x)", "-o", "{tmp}/a.py"], "unknown operator 'foo'"),
    (["significance", "{plain}", "--baselines", "relu(x),nosuch"], "--baselines: unknown activation 'nosuch'"),
    (["significance", "{plain}", "--baselines", "relu"], "the synthetic task scores expressions only"),
    (["significance", "{plain}", "--set", "budget.children=3"], "can change only child.* and resources.*"),
    (["significance", "{plain}", "--set", "child.steps=0"], "child.steps: must be from 1 to 10,000,000, got 0"),
    (["significance", "{plain}", "--set", "child.stepz=5"], "child.stepz: unknown setting"),
    (["significance", "{plain}", "--set", "nonsense"], "expected KEY.PATH=VALUE"),
    (["significance", "{plain}", "--seeds", "0"], "--seeds: must be a whole number from 1 to 1,000"),
    (["significance", "{plain}", "--candidates", "relu(x)", "--baselines", "relu(x)"], "nothing to compare"),
])
def test_bad_input_is_one_line_and_exit_code_2(runs, tmp_path, capsys, argv, message):
    plain, _ = runs
    before = (plain / "store.sqlite").stat().st_mtime_ns
    argv = [a.format(plain=plain, missing=tmp_path / "missing", tmp=tmp_path) for a in argv]
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"actsearch {argv[0]}: error: ")
    assert message in err
    assert (plain / "store.sqlite").stat().st_mtime_ns == before  # nothing was written


def test_an_exported_candidate_stopped_early_says_its_reward_is_a_part_trained_score(tmp_path, capsys):
    from conftest import finish_in_process

    from search.loop.config import config_from_dict

    config = config_from_dict({"seed": 1, "space": {"core_units": 1}, "controller": {"kind": "random"},
                               "child": {"task": "synthetic", "noise": 0.02, "steps": 500},
                               "fidelity": {"rungs": [50, 150], "eta": 3}, "budget": {"children": 30}})
    run = tmp_path / "early"
    finish_in_process(run, config, capacity=2)
    code, out, _ = cli(capsys, "top", run, "-k", "30", "--format", "json")
    rows = json.loads(out)
    stopped = next(r for r in rows if r["status"] == "stopped")
    trained = next(r for r in rows if r["status"] == "ok")
    code, out, err = cli(capsys, "export", run, stopped["rank"], "-o", tmp_path / "stopped.py")
    assert code == 0, err
    with Store.open(run, readonly=True) as store:
        step = next(c for c in store.candidates() if c["index"] == stopped["candidate"])["metrics"]["rung_step"]
    assert step in (50, 150) and f"stopped early at step {step} of its child: the reward is the score there" in out
    assert f"status: stopped early at step {step}" in (tmp_path / "stopped.py").read_text()
    code, out, err = cli(capsys, "export", run, trained["rank"], "-o", tmp_path / "trained.py")
    assert code == 0 and "stopped" not in out and "status:" not in (tmp_path / "trained.py").read_text()
