"""A child's result: one typed record (evaluator.result.ChildResult), one reward, one way an exception becomes a line."""
import json
import math

import pytest

from evaluator.result import MAX_METRICS, MAX_TEXT, ChildResult, one_line, reward
from search.language.errors import UserError
from search.loop.config import RewardSettings


def test_each_outcome_has_its_constructor_and_whose_fault_it_is():
    assert ChildResult.ok("relu(x)", 3, 0.91).fault is None
    assert ChildResult.diverged("exp(x)", 3, "non-finite loss").fault == "candidate"
    assert ChildResult.timeout("relu(x)", 3, "time limit").system_failure
    assert not ChildResult.failed("relu(x)", 3, "ValueError: x", "candidate").system_failure
    assert ChildResult.failed("relu(x)", 3, "worker lost", "system").system_failure


def test_the_record_round_trips_through_json_without_the_traceback():
    result = ChildResult.ok("x * sigmoid(x)", 7, 0.95, steps=500, device="cpu", traceback="Traceback ...",
                            extra={"node": "n1", "table_seed": 1})
    record = json.loads(json.dumps(result.to_dict()))
    assert "traceback" not in record and record["node"] == "n1" and record["accuracy"] == 0.95
    back = ChildResult.from_dict(record)
    assert back.to_dict() == result.to_dict() and back.extra == {"node": "n1", "table_seed": 1}


@pytest.mark.parametrize("record", [{"status": "great"}, "not a dict", None, {"accuracy": 0.9}])
def test_a_malformed_record_is_a_system_failure(record):
    result = ChildResult.from_dict(record)
    assert result.status == "failed" and result.system_failure and "malformed result record" in result.error


def test_what_a_record_may_hold_is_bounded_and_says_what_was_cut():
    result = ChildResult.ok("relu(x)", 0, None, metrics={f"m{i}": float(i) for i in range(200_000)}).bounded()
    record = result.to_dict()
    assert len(record["metrics"]) == MAX_METRICS and record["metrics_cut"] == 200_000 - MAX_METRICS
    assert len(json.dumps(record)) < 5_000
    long = ChildResult.failed("relu(x)", 0, "E" * 100_000, "candidate").to_dict()
    assert len(long["error"]) <= MAX_TEXT + 10 and long["error"].endswith("[cut]")


def test_a_user_child_returning_200000_metrics_stores_a_bounded_record(tmp_path):
    from evaluator.settings import ChildSettings
    from evaluator.train import train_child

    (tmp_path / "many.py").write_text("def train(activation, seed, device, options):\n"
                                      "    return {f'm{i}': 0.5 for i in range(200_000)}\n")
    result = train_child(ChildSettings(task=f"{tmp_path / 'many.py'}:train", device="cpu"), "relu", 0)
    assert result.status == "ok" and len(result.metrics) == MAX_METRICS
    assert result.to_dict()["metrics_cut"] == 200_000 - MAX_METRICS


@pytest.mark.parametrize("result, settings, expected", [
    (ChildResult.ok("r", 0, 0.9), RewardSettings(), ("ok", 0.9)),
    (ChildResult.ok("r", 0, None, metrics={"val_loss": 0.3}), RewardSettings(metric="val_loss", minimize=True,
                                                                              failed=-9, screened=-9), ("ok", -0.3)),
    (ChildResult.diverged("r", 0, "nan"), RewardSettings(failed=0.125), ("diverged", 0.125)),
    (ChildResult.ok("r", 0, None, metrics={"val_loss": math.nan}), RewardSettings(metric="val_loss", minimize=True,
                                                                                  failed=-9, screened=-9),
     ("diverged", -9.0)),  # a non-finite metric diverged, as a built-in child's non-finite loss
    (ChildResult.ok("r", 0, None, metrics={"val_loss": "inf"}), RewardSettings(metric="val_loss", minimize=True,
                                                                                failed=-9, screened=-9),
     ("diverged", -9.0)),  # as a user child's record keeps it (JSON has no inf)
    (ChildResult.ok("r", 0, None, metrics={"val_loss": "low"}), RewardSettings(metric="val_loss", minimize=True,
                                                                                failed=-9, screened=-9),
     ("failed", -9.0)),  # no number
    (ChildResult.ok("r", 0, None, metrics={"loss": 1.0}), RewardSettings(metric="val_loss", minimize=True,
                                                                         failed=-9, screened=-9), ("failed", -9.0)),
])
def test_one_reward(result, settings, expected):
    status, value, out = reward(result, settings)
    assert (status, value) == expected
    assert status == "ok" or out.fault is not None


def test_an_exception_is_one_line():
    try:
        raise ValueError("first line\nthe last line says why")
    except ValueError as exc:
        assert one_line(exc) == "ValueError: the last line says why"
        assert one_line(exc, where=True).startswith("ValueError: the last line says why (at test_result.py:")
    assert one_line(UserError("child.task: no such file")) == "child.task: no such file"
