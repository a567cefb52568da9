"""Early stopping (asynchronous successive halving): children report at rungs, the hopeless ones stop there, and what
that saves is counted; bad settings and bad reports are one line."""
import math

import pytest
import yaml
from conftest import run_cli

from evaluator.settings import ChildSettings
from evaluator.train import train_child
from search.language.errors import UserError
from search.loop.config import config_from_dict, load_config
from search.loop.fidelity import RungBoard, RungDecision, count_child, early_stopping_text, quantile
from search.loop.local import search_local
from search.loop.store import CHILD_STATUSES


def test_a_child_goes_on_only_in_the_best_1_over_eta_at_its_rung():
    board = RungBoard([10, 30], eta=3)
    assert board.decide("a", 0, 10, 0.5)  # the first at a rung always goes on
    assert not board.decide("b", 0, 10, 0.4)  # below the 2/3 quantile of {0.5, 0.4}
    assert board.decide("c", 0, 10, 0.9)
    assert [d.key for d in board.drain()] == ["a", "b", "c"] and board.drain() == []
    assert board.decide("b", 0, 10, 0.99) is False  # asked again (a retrained child): the same answer
    assert quantile([1, 2, 3, 4], 0.5) == 2.5


def test_minimised_metrics_are_negated():
    board = RungBoard([5], eta=2, metric="val_loss", minimize=True)
    assert board.decide(0, 0, 5, 1.0) and board.decide(1, 0, 5, 0.5) and not board.decide(2, 0, 5, 3.0)


def test_a_resumed_board_answers_as_before():
    board = RungBoard([10], eta=3)
    board.load([RungDecision(4, 0, 10, 0.8, True), RungDecision(5, 0, 10, 0.2, False)])
    assert board.decide(5, 0, 10, 0.95) is False and board.drain() == []
    assert not board.decide(6, 0, 10, 0.3)  # against the loaded scores


@pytest.mark.parametrize("report, says", [
    (lambda r: r(5, math.nan), "must be a finite number"),
    (lambda r: r(5, "0.5"), "must be a finite number"),
    (lambda r: (r(8, 0.5), r(7, 0.5)), "steps must be whole numbers that do not decrease"),
])
def test_a_bad_report_is_the_childs_error(report, says):
    with pytest.raises(UserError, match=says):
        report(RungBoard([5], eta=3).reporter(0))


def _synthetic(rungs, children=60, seed=1):
    return config_from_dict({"seed": seed, "space": {"core_units": 1}, "controller": {"kind": "random"},
                             "child": {"task": "synthetic", "noise": 0.02, "steps": 500},
                             "fidelity": {"rungs": rungs, "eta": 3}, "budget": {"children": children}})


def test_a_search_with_early_stopping_spends_fewer_steps_on_the_same_children():
    full, early = search_local(_synthetic([]), capacity=4), search_local(_synthetic([50, 150]), capacity=4)
    assert [c[1] for c in full["children"]] == [c[1] for c in early["children"]]  # random search: same functions
    store = early["store"]
    steps = store.child_steps()
    assert steps["stopped"][0] > 10 and steps["steps"] < 0.6 * full["store"].child_steps()["steps"]
    assert "of child steps saved" in early_stopping_text(steps, _synthetic([50, 150]))
    tally = {"children": 0, "steps": 0, "stopped": {}}  # the driver's running tally counts as the store does
    for c in store.candidates(CHILD_STATUSES):
        count_child(tally, c["status"], c["metrics"])
    assert tally == steps
    stopped = store.candidates(["stopped"])
    assert all(c["metrics"]["rung"] in (0, 1) and c["metrics"]["steps"] in (50, 150) for c in stopped)
    assert all(c["reward"] == c["metrics"]["accuracy"] for c in stopped)  # the score it reached is its reward
    rungs = store.rungs()
    assert {(r["candidate"], r["rung"]) for r in rungs if not r["go_on"]} == \
        {(c["index"], c["metrics"]["rung"]) for c in stopped}
    # the best function is found either way: a child stopped early never beat the best that went on
    assert max(early["rewards"]) == max(full["rewards"])


def test_a_real_child_stops_at_its_rung_with_its_score_there():
    settings = ChildSettings(task="mnist1d", steps=40, train_size=600, val_size=200, device="cpu")
    board = RungBoard([10, 20], eta=3)
    board.load([RungDecision(k, 0, 10, 0.99, True) for k in range(3)])  # three better children were there first
    result = train_child(settings, "relu", seed=0, report=board.reporter("me"))
    assert result.status == "stopped" and result.steps == 10 and 0 <= result.accuracy < 0.99
    assert (result.extra["rung"], result.extra["rung_step"]) == (0, 10)
    going = train_child(settings, "relu", seed=0, report=RungBoard([10, 20], eta=3).reporter("alone"))
    assert going.status == "ok" and going.steps == 40


USER_CHILD = '''
def train(activation, seed, device, options):
    report = options.get("report")
    loss = 1.0 + seed % 5
    for step in range(1, 101):
        loss *= 0.99
        if report is not None and options.get("bad") == "decreasing" and step == 50:
            report(10, loss)
        if report is not None and not report(step, loss):
            return {"val_loss": loss}
    return {"val_loss": loss}
'''


def test_a_user_child_reports_through_options_and_stops(tmp_path):
    (tmp_path / "child.py").write_text(USER_CHILD)
    settings = ChildSettings(task=f"{tmp_path / 'child.py'}:train", device="cpu")
    board = RungBoard([20, 60], eta=3, metric="val_loss", minimize=True)
    results = [train_child(settings, "relu", seed, report=board.reporter(seed)) for seed in range(6)]
    assert {r.status for r in results} == {"ok", "stopped"}
    stopped = [r for r in results if r.status == "stopped"]
    assert all(r.metrics["val_loss"] > 0 and r.steps in (20, 60) for r in stopped)
    plain = train_child(settings, "relu", 0)  # no early stopping: it never reports, and trains to the end
    assert plain.status == "ok"
    bad = ChildSettings(task=f"{tmp_path / 'child.py'}:train", device="cpu", options={"bad": "decreasing"})
    failed = train_child(bad, "relu", 0, report=RungBoard([80], eta=3, metric="val_loss", minimize=True).reporter(0))
    assert failed.status == "failed" and "do not decrease" in failed.error


@pytest.mark.parametrize("fidelity, says", [
    ({"rungs": [100, 50]}, "fidelity.rungs: must be increasing"),
    ({"rungs": [50, 500]}, "fidelity.rungs: a rung at step 500 is not below child.steps (500)"),
    ({"rungs": [0]}, "fidelity.rungs: must be steps >= 1"),
    ({"rungs": [50], "eta": 1}, "fidelity.eta: must be above 1"),
    ({"rungs": ["x"]}, "fidelity.rungs[0]: must be an integer"),
])
def test_bad_fidelity_settings_are_one_line(tmp_path, capsys, fidelity, says):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"child": {"task": "synthetic"}, "fidelity": fidelity}))
    code, out, err = run_cli(capsys, "run", path, "--results", tmp_path / "results")
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()


def test_fidelity_from_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"child": {"task": "synthetic"}}))
    assert load_config(path, ["fidelity.rungs=55,166"]).fidelity.rungs == (55, 166)


SMALL_SPACE = {"core_units": 1, "unary": ["x", "relu", "tanh", "sigmoid", "sin", "exp"], "binary": ["add", "mul", "max"]}


@pytest.fixture(scope="module")
def curve_table(tmp_path_factory, address):
    """A table of a small space whose build recorded every child's curve (synthetic task: the same score at every
    rung)."""
    folder = tmp_path_factory.mktemp("curves")
    (folder / "t.yaml").write_text(yaml.safe_dump({
        "space": SMALL_SPACE, "controller": {"kind": "exhaustive"}, "child": {"task": "synthetic", "noise": 0.05},
        "fidelity": {"rungs": [100, 300], "stop": False}, "budget": {"children": 1000},
        "resources": {"address": address}}))
    import io

    from search.analysis.table_build import build_table
    assert build_table(str(folder / "t.yaml"), 2, folder / "t.json", results=folder / "results",
                       stream=io.StringIO()) is not None
    return folder / "t.json"


def test_a_table_build_records_each_childs_curve(curve_table):
    from evaluator.table_file import load_table

    table = load_table(curve_table)
    assert table.header["rungs"] == [100, 300]
    ok = [r for r in table.rows if r["status"] == "ok"]
    assert ok and all(r["curve"][k] == [r["accuracy"][k]] * 2 for r in ok for k in range(2))


def test_a_replay_with_early_stopping_replays_the_curves(curve_table):
    from evaluator.table_file import TableError

    def config(rungs):
        return config_from_dict({"seed": 4, "space": SMALL_SPACE, "controller": {"kind": "random"},
                                 "child": {"task": "table", "table": str(curve_table)},
                                 "fidelity": {"rungs": rungs}, "budget": {"children": 40}})

    early = search_local(config([100, 300]), capacity=4)
    stopped = early["store"].candidates(["stopped"])
    assert stopped and all(c["metrics"]["steps"] in (100, 300) for c in stopped)
    full = search_local(config([]), capacity=4)
    assert early["store"].child_steps()["steps"] < full["store"].child_steps()["steps"]
    with pytest.raises(TableError, match=r"recorded scores at steps \[100, 300\], not at \[200\]"):
        search_local(config([200]), capacity=4)


def test_a_table_replay_counts_each_childs_steps(curve_table):
    """``search_table`` (benchmarks/search_efficiency.py) replays early stopping and says what each child cost: the
    steps a stopped child trained to its rung, the table's steps for the others."""
    from controller import ControllerSettings, make_proposer
    from evaluator.table_file import load_table
    from search.loop.config import SpaceSettings
    from search.loop.local import search_table

    table = load_table(curve_table)
    space = SpaceSettings(core_units=1, unary=tuple(SMALL_SPACE["unary"]), binary=tuple(SMALL_SPACE["binary"])).build()
    runs = {rungs: search_table(make_proposer(ControllerSettings(kind="random"), space, 3), space, table, 30, seed=3,
                                fidelity={"rungs": list(rungs)}) for rungs in ((), (100, 300))}
    full, early = runs[()], runs[(100, 300)]
    assert full["steps"] == [500] * full["evaluated"] and not any(full["stopped"])
    assert any(early["stopped"]) and len(early["steps"]) == early["evaluated"]
    assert all(s in (100, 300) if stop else s == 500 for s, stop in zip(early["steps"], early["stopped"]))
    assert sum(early["steps"]) == early["store"].child_steps()["steps"] < sum(full["steps"])


def test_a_table_build_that_would_stop_children_is_refused(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"controller": {"kind": "exhaustive"},
                                                     "child": {"task": "synthetic"}, "fidelity": {"rungs": [100]}}))
    code, out, err = run_cli(capsys, "table", "build", tmp_path / "t.yaml", "--seeds", "1", "--out",
                             tmp_path / "t.json")
    assert code == 2 and "fidelity.stop: a table records whole children" in err


def test_steps_saved_by_stopping_are_told_apart_from_children_that_ended_on_their_own():
    config = _synthetic([50])  # child.steps 500
    stopped = {"children": 10, "steps": 8 * 500 + 2 * 50, "stopped": {0: 2}}
    assert early_stopping_text(stopped, config) == "stopped 2 at rung 1 (50 steps); 18% of child steps saved"
    diverged = {"children": 10, "steps": 9 * 500 + 20, "stopped": {}}  # one child's loss went non-finite at step 20
    assert early_stopping_text(diverged, config) == \
        "stopped none; 10% not trained by children that ended early on their own"
    both = {"children": 10, "steps": 7 * 500 + 2 * 50, "stopped": {0: 2}}
    assert early_stopping_text(both, config).endswith("18% of child steps saved; 10% not trained by children that "
                                                      "ended early on their own")
