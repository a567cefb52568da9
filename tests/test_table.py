"""The tabular benchmark: building a table through the run machinery, showing it, replaying it as a task, and the
shipped tables themselves (a complete one-unit table, and the full-fidelity table of named functions)."""
import csv
import io
import json
import statistics

import pytest
from conftest import run_cli

from evaluator.table_file import COLUMNS, COLUMNS_OF_VERSION, TableError, load_table, replay_child
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


def test_a_build_whose_budget_ends_before_the_space_writes_what_it_trained(built, capsys):
    """A budget smaller than the space ended the first session "finished": the build said "finished; run the same
    command again to continue" and exited 130 without a table (the second call wrote it)."""
    folder, config, _ = built
    out = folder / "part.json"
    code, stdout, err = run_cli(capsys, "table", "build", config, "--seeds", "1", "--out", out, "--results",
                                folder / "results", "--name", "part", "--set", "budget.children=5")
    assert code == 0, err
    assert "ended the search before the space did: the table holds the 5 children it trained" in stdout + err
    assert len(load_table(out).rows) == 5


def test_build_writes_every_function_once_per_seed(built):
    folder, config, out = built
    table = load_table(out)
    data = json.loads(out.read_text())
    assert data["columns"] == list(COLUMNS)
    h = table.header
    assert h["seeds"] == [5, 6] and h["kind"] == "space" and h["child"]["task"] == "synthetic"
    assert h["commit"] and h["machine"] and h["date"] and h["command"].startswith("actsearch table build")
    assert f"--results {folder / 'results'}" in h["command"]  # run again elsewhere, it continues the same runs
    # every distinct trainable function of the space, each with 2 seeds that differ (the noise is per seed)
    from search.language.index import FunctionIndex
    from search.language.space import Space

    space = Space(core_units=1, unary=("x", "neg", "relu", "sin", "tanh", "sigmoid", "beta"),
                  binary=("add", "mul", "max"))
    trainable = {FunctionIndex.of(space).fingerprint(t) for t in space.enumerate() if space.decode(t).screen().ok}
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


def test_a_table_of_functions_never_mixes_seeds_or_another_run(built, capsys):
    """Issue 20 item 6: a --functions table is a study keyed by the child settings and the run seed; rebuilding with
    another seed, or pointing --name at a run of other settings, is refused (one line, nothing written)."""
    folder, config, out = built
    named = folder / "named.json"
    args = ["table", "build", config, "--seeds", "2", "--out", named, "--results", folder / "results", "--name",
            "named", "--functions", "relu(x),sin(x) + x"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    table = load_table(named)
    assert table.header["kind"] == "functions" and len(table.rows) == 2 and table.header["seeds"] == [0, 1]
    written = named.read_bytes()
    code, _, err = run_cli(capsys, *args, "--set", "seed=6")
    assert code == 2 and "named: was built with seed 5, this table needs 6" in err and err.count("\n") == 1, err
    # the search run of this table's seed 1 was made with run seed 6: not a home for a study of seed 5
    args[args.index("named")] = "small-seed1"
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "small-seed1: was built with seed 6, this table needs 5" in err, err
    assert named.read_bytes() == written


def test_study_key_holds_the_run_seed():
    from search.analysis.significance import study_key
    from search.loop.config import config_from_dict

    child = {"task": "synthetic", "noise": 0.01}
    assert study_key(config_from_dict({"seed": 5, "child": child})) != study_key(config_from_dict({"seed": 6,
                                                                                                    "child": child}))
    assert study_key(config_from_dict({"seed": 5, "child": child})) == study_key(config_from_dict({"seed": 5,
                                                                                                    "child": child}))


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
    # csv and json: the data alone, the file's values unrounded, the canonical text beside the shown one
    args = ["table", "show", out, "--top", "3", "--bottom", "2", "--rank", "relu", "--rank", "gelu"]
    code, stdout, err = run_cli(capsys, *args, "--format", "json")
    assert code == 0, err
    data = json.loads(stdout)
    assert [r["section"] for r in data["rows"]] == ["top"] * 3 + ["bottom"] * 2 + ["asked"] * 2
    assert data["rows"][0]["accuracy"] == table.rows[0]["accuracy"] and data["rows"][0]["text"] == table.rows[0]["text"]
    assert data["rows"][-1]["status"] == "not in table" and data["header"] == table.header
    code, stdout, err = run_cli(capsys, *args, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert len(rows) == 7 and float(rows[0]["accuracy"].split()[0]) == table.rows[0]["accuracy"][0]


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


def shipped_rows(k: int = 5) -> dict:
    """The shipped cheap table cut to its best ``k`` rows: a valid table to damage."""
    from conftest import REPO

    data = json.loads((REPO / "tables" / "mnist1d-150.json").read_text())
    data["rows"] = data["rows"][:k]
    return data


def write_raw(path, data: dict) -> None:
    """``data`` laid out as ``write_table`` writes a table (one row a line), whatever its rows hold."""
    width = len(data["rows"][0]) if data["rows"] else len(COLUMNS)  # an older shipped table has fewer columns
    version, columns = next((v, c) for v, c in COLUMNS_OF_VERSION.items() if len(c) == width)
    path.write_text(f'{{"format": "actsearch-table", "version": {version},\n"header": {json.dumps(data["header"])},\n'
                    f'"columns": {json.dumps(list(columns))},\n"rows": [\n'
                    + ",\n".join(json.dumps(r) for r in data["rows"]) + "\n]}\n")


def _set(column: str, row: int, value):
    def change(data):
        data["rows"][row][COLUMNS.index(column)] = value
    return change


def _header(field: str, value):
    def change(data):
        data["header"][field] = value
    return change


def _swap_first_two(data):
    data["rows"][:2] = data["rows"][1::-1]


def _repeat_first(data):
    data["rows"].insert(1, list(data["rows"][0]))


def _same_function_twice(data):
    twin = list(data["rows"][0])
    twin[0] = "(" + twin[0] + ")"  # another text of the same function: sorts before it at the same mean
    data["rows"].insert(0, twin)


def _percent(data):
    for row in data["rows"]:
        row[COLUMNS.index("accuracy")] = [None if a is None else round(a * 100, 2) for a in row[5]]
        row[COLUMNS.index("mean")] = None if row[7] is None else round(row[7] * 100, 3)


@pytest.mark.parametrize("damage, says", [
    (_set("fingerprint", 1, ["3f339f4c93b62bb9"]), "row 2 (line 6: 'relu(x) - sinc(x)'): fingerprint must be 16"),
    (_set("fingerprint", 1, None), "row 2 (line 6: 'relu(x) - sinc(x)'): fingerprint null is not that of its"),
    (_set("fingerprint", 1, "0123456789abcdef"), 'fingerprint "0123456789abcdef" is not that of its text'),
    (_set("mean", 2, "0.92"), "row 3 (line 7: 'cos(x) - softplus(x)'): mean must be a number or null"),
    (_set("mean", 2, 0.95), "mean 0.95 is not the mean of its seeds' rewards (0.92980)"),
    (_set("sd", 2, 0.5), "sd 0.5 is not the sd of its seeds' rewards"),
    (_set("accuracy", 0, [None, 0.928]), "row 1 (line 5: 'softplus(x) - cos(x)'): seed 0 is ok but its accuracy null"),
    (_set("accuracy", 0, [1.931, 0.928]), "seed 0 is ok but its accuracy 1.931 is not a number in [0, 1]"),
    (_set("accuracy", 0, [-0.1, 0.928]), "is not a number in [0, 1]"),
    (_set("accuracy", 0, [0.931]), "accuracy must be a list of 2 (one per seed)"),
    (_set("status", 0, ["ok", "great"]), "status must be a list of 2 of ok, diverged"),
    (_set("status", 0, ["ok", "diverged"]), "seed 1 is diverged but has an accuracy (0.9262)"),
    (_set("text", 0, None), "row 1 (line 5): text must be an expression or a baseline name, got null"),
    (_set("tokens", 0, ["x", "x"]), "tokens must be text"),
    (_set("seconds", 0, -1), "seconds must be a number >= 0 or null"),
    (_set("steps", 0, [150, 151]), "steps must be null or a list of 2 (one per seed) of null or whole numbers from 0 to 150"),
    (_set("steps", 0, [150]), "steps must be null or a list of 2"),
    (_percent, "row 1 (line 5: 'softplus(x) - cos(x)'): seed 0 is ok but its accuracy 94.28 is not a number in [0, 1]"),
    (_swap_first_two, "row 2 (line 6: 'softplus(x) - cos(x)'): is out of order"),
    (_repeat_first, "row 2 (line 6: 'softplus(x) - cos(x)'): repeats the text of row 1"),
    (_same_function_twice, "row 2 (line 6: 'softplus(x) - cos(x)'): repeats the function of row 1"),
    (_header("seeds", 2), "header 'seeds' must be a list of distinct whole numbers, got 2"),
    (_header("seeds", [0, 0]), "header 'seeds' must be a list"),
    (_header("failed_reward", "0"), "header 'failed_reward' must be a number"),
    (_header("kind", "mine"), "header 'kind' must be"),
    (_header("space", {"core_units": "1"}), "header 'space' must be a mapping with core_units"),
    (_header("dirty", "yes"), "header 'dirty' must be true, false or null"),
    (lambda data: data["header"].pop("seeds"), "header has no 'seeds'"),
])
def test_every_column_and_header_field_is_checked(tmp_path, capsys, damage, says):
    """Valid JSON that is no valid table: one line naming the file and the row (its line and text), exit 2."""
    data = shipped_rows()
    path = tmp_path / "t.json"
    write_raw(path, data)
    assert len(load_table(path).rows) == 5  # undamaged, the cut table loads
    damage(data)
    write_raw(path, data)
    code, _, err = run_cli(capsys, "table", "show", path)
    assert code == 2 and says in err and "t.json" in err and err.count("\n") == 1, err


def test_json_nested_deeply_and_a_folder_are_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "actsearch-table", "version": 1, "header": ' + "[" * 200_000 + "]" * 200_000 + "}")
    code, _, err = run_cli(capsys, "table", "show", deep)
    assert code == 2 and "deep.json: not a readable table file (JSON nested too deeply)" in err
    assert err.count("\n") == 1
    code, _, err = run_cli(capsys, "table", "show", tmp_path)
    assert code == 2 and f"{tmp_path}: is a folder, not a table file" in err and err.count("\n") == 1


def test_shown_ranks_are_those_of_a_scan_of_every_row(tmp_path):
    """Ranks are computed once per table (table show --top N asked each row's by scanning all rows)."""
    path = tmp_path / "t.json"
    write_raw(path, shipped_rows(40))
    table = load_table(path)
    ranks = [table.rank_of(row) for row in table.rows]
    assert ranks == [1 + sum(1 for r in table.rows if r["mean"] > row["mean"]) for row in table.rows]
    assert len(set(ranks)) < len(ranks)  # means tie among them: tied rows share the better rank


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
        r = replay_child(str(out), row["text"], seed).to_dict()
        assert r["status"] == "ok" and r["accuracy"] == row["accuracy"][seed % 2] and r["table_seed"] == seed % 2
        assert replay_child(str(out), row["simplest"], seed).to_dict()["accuracy"] == r["accuracy"]  # deterministic, any text
    assert all(r["steps"] == [table.header["child"]["steps"]] * 2 for r in table.rows)  # the build records them
    missing = replay_child(str(out), "cos(x) * x", 3).to_dict()
    assert missing["status"] == "failed" and "not in the table" in missing["error"]


def test_a_search_replays_the_table_through_actsearch_run(built, capsys, address):
    folder, config, out = built
    replay = folder / "replay.yaml"
    replay.write_text(f"seed: 1\n{SMALL_SPACE}controller:\n  kind: random\nchild:\n  task: table\n"
                      f"  table: {out}\nbudget:\n  children: 40\nresources:\n  address: {address}\n")
    code, stdout, err = run_cli(capsys, "run", replay, "--results", folder / "runs")
    assert code == 0, err
    from search.loop.store import Store

    table = load_table(out)
    with Store.open(folder / "runs" / "replay", readonly=True) as store:
        trained = store.candidates(("ok", "failed"))
    assert len(trained) == 40
    assert all(c["status"] == "ok" for c in trained)  # the table's own space: every function is in the table
    for c in trained:
        row = table.by_fingerprint[c["fingerprint"]]
        assert c["reward"] == row["accuracy"][child_seed(1, c["index"]) % 2]
    # a missing table file: exit 2, naming it, and no run directory
    code, _, err = run_cli(capsys, "run", replay, "--results", folder / "runs", "--name", "x",
                           "--set", "child.table=nowhere.json")
    assert code == 2 and "nowhere.json" in err and not (folder / "runs" / "x").exists()
    # its significance test takes only the table's functions and seeds: refused before anything is recorded
    run = folder / "runs" / "replay"
    before = sorted((p.name, p.stat().st_size) for p in run.iterdir())
    for args, says in ((["--baselines", "relu,gelu", "--seeds", "2"], "gelu is not in the table small.json"),
                       (["--baselines", "relu", "--seeds", "5"], "5 seeds, but the table small.json records 2")):
        code, _, err = run_cli(capsys, "significance", run, "--top", "1", *args)
        assert code == 2 and says in err, err
    assert sorted((p.name, p.stat().st_size) for p in run.iterdir()) == before
    code, stdout, err = run_cli(capsys, "significance", run, "--top", "1", "--baselines", "relu", "--seeds", "2")
    assert code == 0, err
    assert "on the table's recorded seeds" in stdout and "synthetic" not in stdout
    # seed number s reads recorded seed s: two distinct pairs (a derived seed mod 2 could read one seed twice)
    with Store.open(run, readonly=True) as store:
        replayed = store.retrainings()
    assert replayed and all(r["metrics"]["table_seed"] == r["seed_number"] == r["seed"] for r in replayed), replayed


@pytest.mark.parametrize("change, says", [
    ("confirm.baselines=[relu, gelu]", "gelu is not in the table small.json"),
    ("confirm.seeds=3", "3 seeds, but the table small.json records 2 a function"),
])
def test_a_replay_whose_confirmation_the_table_cannot_score_is_refused(built, capsys, change, says):
    """A confirmation replays recorded results: a baseline the table lacks would score 0 at every seed (a failed
    lookup) and win every verdict against it, and seeds beyond the table's would count its two results again as
    independent pairs. The run is refused before it exists, one line naming what is wrong."""
    folder, config, out = built
    replay = folder / "replay-confirm.yaml"
    replay.write_text(f"seed: 1\n{SMALL_SPACE}controller:\n  kind: random\nchild:\n  task: table\n"
                      f"  table: {out}\nbudget:\n  children: 4\nconfirm:\n  enabled: true\n  top: 1\n"
                      f"  baselines: [relu]\n  seeds: 2\n")
    code, _, err = run_cli(capsys, "run", replay, "--results", folder / "runs", "--set", change)
    assert code == 2 and says in err and "confirm.enabled: false" in err and err.count("\n") == 1, err
    assert not (folder / "runs" / "replay-confirm").exists()


@pytest.mark.parametrize("change, says", [
    ("space.unary=[x, neg, relu, sin, tanh, sigmoid, beta, cos]", "holds 76.6% of this space's 192 token strings: "
                                                                   "operators it lacks (cos)"),
    ("space.core_units=2", "holds 0.0% of this space's"),
])
def test_a_replay_of_a_space_the_table_does_not_hold_is_refused(built, capsys, change, says):
    """A two-unit search of a one-unit table, or one with operators the table lacks, would fail most children: the
    run is refused before it exists, saying how much of its space the table holds."""
    folder, config, out = built
    replay = folder / "replay-other.yaml"
    replay.write_text(f"seed: 1\n{SMALL_SPACE}controller:\n  kind: random\nchild:\n  task: table\n"
                      f"  table: {out}\nbudget:\n  children: 40\n")
    code, _, err = run_cli(capsys, "run", replay, "--results", folder / "runs", "--set", change)
    assert code == 2 and says in err and "small.json" in err and err.count("\n") == 1, err
    assert not (folder / "runs" / "replay-other").exists()


def test_replay_space_check_accepts_the_space_and_its_parts_and_refuses_named_functions(built, tmp_path):
    from evaluator.table_file import check_replay_space
    from search.language.space import Space

    out = built[2]
    check_replay_space(out, Space(1, ("x", "neg", "relu", "sin", "tanh", "sigmoid", "beta"), ("add", "mul", "max")))
    check_replay_space(out, Space(1, ("x", "sin"), ("mul",)))
    data = json.loads(out.read_text())
    data["header"]["kind"] = "functions"
    named = tmp_path / "named.json"
    named.write_text(json.dumps(data))
    with pytest.raises(TableError, match="named functions, not a space"):
        check_replay_space(named, Space(1, ("x", "sin"), ("mul",)))


def test_a_replayed_child_costs_the_steps_it_trained(tmp_path):
    """A child that diverged at step 3 costs 3 steps in a replay, as in the run it was recorded from (the search's
    compute counts depend on it); a table without a steps column (format 2) charges child.steps, an upper bound."""
    data = shipped_rows(4000)
    steps_at = COLUMNS.index("steps")
    row = next(r for r in data["rows"] if r[COLUMNS.index("status")] == ["diverged", "diverged"])
    assert row[steps_at][0] < 20
    path = tmp_path / "t.json"
    write_raw(path, data)
    replayed = replay_child(str(path), row[0], 0).to_dict()
    assert replayed["status"] == "diverged" and replayed["steps"] == row[steps_at][0]
    ok = data["rows"][0]
    assert replay_child(str(path), ok[0], 1).to_dict()["steps"] == 150
    for r in data["rows"]:
        del r[steps_at]
    old = tmp_path / "old.json"
    write_raw(old, data)
    assert load_table(old).rows[0]["steps"] is None
    assert replay_child(str(old), row[0], 0).to_dict()["steps"] == 150
