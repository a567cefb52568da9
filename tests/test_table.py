"""The tabular benchmark: building a table through the run machinery, showing it, replaying it as a task, and the
shipped tables themselves (a complete one-unit table, and the full-fidelity table of named functions)."""
import json
import statistics

import pytest
from conftest import run_cli

from evaluator.tabular import COLUMNS, TableError, load_table, replay_child
from search.loop.config import child_seed

SMALL_SPACE = """
space:
  core_units: 1
  unary: [x, neg, relu, sin, tanh, sigmoid, beta]
  binary: [add, mul, max]
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, address):
    """A 2-seed table of a 63-token-string space on the synthetic task (with seed noise), built by the CLI."""
    folder = tmp_path_factory.mktemp("table")
    config = folder / "small.yaml"
    config.write_text(f"seed: 5\n{SMALL_SPACE}controller:\n  kind: exhaustive\nchild:\n  task: synthetic\n"
                      f"  noise: 0.02\nbudget:\n  children: 1000\nresources:\n  address: {address}\n")
    out = folder / "small.json"
    from search.cli import main  # run_cli needs capsys, which a module fixture cannot have

    code = main(["table", "build", str(config), "--seeds", "2", "--out", str(out), "--results",
                 str(folder / "results")])
    assert code == 0
    return folder, config, out


def test_build_writes_every_function_once_per_seed(built):
    folder, config, out = built
    table = load_table(out)
    data = json.loads(out.read_text())
    assert data["columns"] == list(COLUMNS)
    h = table.header
    assert h["seeds"] == [5, 6] and h["kind"] == "space" and h["child"]["task"] == "synthetic"
    assert h["commit"] and h["machine"] and h["date"] and h["command"].startswith("actsearch table build")
    # every distinct trainable function of the space, each with 2 seeds that differ (the noise is per seed)
    from controller.exhaustive import fingerprint_of
    from search.language.space import Space

    space = Space(core_units=1, unary=("x", "neg", "relu", "sin", "tanh", "sigmoid", "beta"),
                  binary=("add", "mul", "max"))
    trainable = {fingerprint_of(t) for t in space.enumerate() if space.decode(t).screen().ok}
    assert {r["fingerprint"] for r in table.rows} == trainable
    assert all(len(r["accuracy"]) == 2 for r in table.rows)
    assert sum(r["accuracy"][0] != r["accuracy"][1] for r in table.rows) > len(table.rows) // 2
    means = [r["mean"] for r in table.rows]
    assert means == sorted(means, reverse=True)
    best = table.rows[0]
    assert best["mean"] == pytest.approx(statistics.fmean(best["accuracy"]), abs=1e-5)
    assert best["sd"] == pytest.approx(statistics.stdev(best["accuracy"]), abs=1e-5)
    # the simplest equivalent text, and the baseline mark
    relu = table.find("relu")
    assert relu["simplest"] == "relu(x)" and relu["equals"] == "relu"
    assert table.find("max(relu(x), x)") is relu  # any equivalent text finds the row


def test_build_again_continues_and_changes_nothing(built, capsys):
    folder, config, out = built
    before = json.loads(out.read_text())["rows"]
    code, stdout, err = run_cli(capsys, "table", "build", config, "--seeds", "2", "--out", out, "--results",
                                folder / "results")
    assert code == 0, err
    assert "already complete" in stdout
    assert json.loads(out.read_text())["rows"] == before
    # a table with other settings refuses the runs of this one instead of mixing them
    code, _, err = run_cli(capsys, "table", "build", config, "--seeds", "2", "--out", out, "--results",
                           folder / "results", "--set", "child.noise=0.05")
    assert code == 2 and "child.noise" in err and err.count("\n") == 1


def test_show_prints_top_bottom_and_ranks(built, capsys):
    folder, config, out = built
    code, stdout, err = run_cli(capsys, "table", "show", out, "--top", "3", "--bottom", "2", "--rank", "relu",
                                "--rank", "max(relu(x), x)", "--rank", "gelu", "--rank", "cos(x)")
    assert code == 0, err
    table = load_table(out)
    assert "top 3:" in stdout and "bottom 2:" in stdout and "asked" in stdout
    assert table.rows[0]["simplest"] in stdout
    rank = table.rank_of(table.find("relu"))
    asked = stdout.split("asked")[1].splitlines()
    assert sum(1 for line in asked if line.split()[:1] == [str(rank)] and "= relu" in line) == 2
    assert sum("not in table" in line for line in asked) == 2  # gelu (not writable here) and cos(x) (not in space)
    code, _, err = run_cli(capsys, "table", "show", out, "--rank", "max(x,")
    assert code == 2 and "max(x," in err


@pytest.mark.parametrize("content, says", [
    (None, "no such table file"),
    ("{not json", "not a readable table file"),
    ('{"format": "something else"}', "not an actsearch table"),
    ('{"format": "actsearch-table", "version": 99}', "version 99"),
])
def test_bad_table_files_exit_2_naming_the_file(tmp_path, capsys, content, says):
    path = tmp_path / "t.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run_cli(capsys, "table", "show", path)
    assert code == 2 and says in err and "t.json" in err and err.count("\n") == 1


def test_damaged_row_and_fingerprint_version(built, tmp_path):
    folder, config, out = built
    data = json.loads(out.read_text())
    data["rows"][3][COLUMNS.index("accuracy")] = ["x", None]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(TableError, match="row 4"):
        load_table(bad)
    data = json.loads(out.read_text())
    data["header"]["fingerprint_version"] = 1
    bad.write_text(json.dumps(data))
    with pytest.raises(TableError, match="fingerprint version"):
        load_table(bad)


def test_replay_returns_a_recorded_seed_chosen_by_the_child_seed(built):
    folder, config, out = built
    table = load_table(out)
    row = table.rows[0]
    for seed in range(6):
        r = replay_child(str(out), row["text"], seed)
        assert r["status"] == "ok" and r["accuracy"] == row["accuracy"][seed % 2] and r["table_seed"] == seed % 2
        assert replay_child(str(out), row["simplest"], seed)["accuracy"] == r["accuracy"]  # deterministic, any text
    missing = replay_child(str(out), "cos(x) * x", 3)
    assert missing["status"] == "failed" and "not in the table" in missing["error"]


def test_a_search_replays_the_table_through_actsearch_run(built, capsys, address):
    folder, config, out = built
    replay = folder / "replay.yaml"
    replay.write_text(f"seed: 1\nspace:\n  core_units: 1\n  unary: [x, neg, relu, sin, tanh, sigmoid, beta, cos]\n"
                      f"  binary: [add, mul, max]\ncontroller:\n  kind: random\nchild:\n  task: table\n"
                      f"  table: {out}\nbudget:\n  children: 40\nresources:\n  address: {address}\n")
    code, stdout, err = run_cli(capsys, "run", replay, "--results", folder / "runs")
    assert code == 0, err
    from search.loop.store import Store

    table = load_table(out)
    with Store.open(folder / "runs" / "replay", readonly=True) as store:
        trained = store.candidates(("ok", "failed"))
    assert len(trained) == 40
    ok = [c for c in trained if c["status"] == "ok"]
    failed = [c for c in trained if c["status"] == "failed"]
    assert ok and failed  # functions with cos are not in the table: failed, saying why
    assert all("not in the table" in c["reason"] for c in failed)
    for c in ok:
        row = table.by_fingerprint[c["fingerprint"]]
        assert c["reward"] == row["accuracy"][child_seed(1, c["index"]) % 2]
    # a missing table file: exit 2, naming it, and no run directory
    code, _, err = run_cli(capsys, "run", replay, "--results", folder / "runs", "--name", "x",
                           "--set", "child.table=nowhere.json")
    assert code == 2 and "nowhere.json" in err and not (folder / "runs" / "x").exists()
