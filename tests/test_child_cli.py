"""``actsearch train`` and ``actsearch calibrate``: results on stdout, bad input as exit code 2 with one line."""
from __future__ import annotations

import json

import pytest

from search.cli import main
from search.cli.child import split_activations
from search.language.errors import UserError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("data"))


def _small(data_dir: str) -> list[str]:
    return ["--data-dir", data_dir, "--train-size", "500", "--val-size", "200", "--device", "cpu"]


def test_train_prints_the_result_record_as_json(data_dir, capsys):
    code = main(["train", "--activation", "x * sigmoid(beta * x)", "--steps", "30", "--seed", "2", "--json",
                 *_small(data_dir)])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["status"] == "ok" and record["steps"] == 30 and record["seed"] == 2
    assert record["activation"] == "x * sigmoid(beta * x)" and 0 <= record["accuracy"] <= 1


def test_train_takes_the_kernel_as_a_flag_and_says_which_ran(data_dir, capsys):
    """The kernel could be chosen only through --set child.kernel=..., and the text line did not say which ran."""
    assert main(["train", "--activation", "x * sigmoid(beta * x)", "--steps", "5", "--kernel", "eager",
                 *_small(data_dir)]) == 0
    assert "(eager kernel)" in capsys.readouterr().out
    assert main(["train", "--activation", "relu", "--steps", "5", "--kernel", "eager", "--json", *_small(data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["kernel"] == "torch"  # relu is torch's own, whatever the setting


def test_train_takes_child_settings_from_a_config_and_flags_win(data_dir, tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text(f"child:\n  steps: 12\n  batch_size: 32\n  data_dir: {data_dir}\n  train_size: 500\n"
                      f"  val_size: 200\n  split: test\n")
    assert main(["train", "--config", str(config), "--activation", "tanh", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["steps"] == 12 and record["split"] == "test"
    assert main(["train", "--config", str(config), "--set", "child.steps=5", "--split", "val", "--activation",
                 "relu", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["steps"] == 5 and record["split"] == "val"


def test_calibrate_summarises_each_activation_over_seeds(data_dir, capsys):
    code = main(["calibrate", "--activations", "relu, max(x, sigmoid(x)),beta", "--seeds", "2", "--steps", "20",
                 "--json", *_small(data_dir)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [row["activation"] for row in out["summary"]] == ["relu", "max(x, sigmoid(x))", "beta"]
    assert len(out["records"]) == 6 and {r["seed"] for r in out["records"]} == {0, 1}
    relu = out["summary"][0]
    accs = [r["accuracy"] for r in out["records"][:2]]
    assert relu["ok"] == 2 and relu["mean"] == pytest.approx(sum(accs) / 2)
    assert out["summary"][2]["mean"] == pytest.approx(0.1, abs=0.05)  # a constant activation learns nothing


def test_calibrate_prints_a_table(data_dir, capsys):
    assert main(["calibrate", "--activations", "relu,x", "--seeds", "2", "--steps", "10", *_small(data_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[1].startswith("relu") and "s/child" in lines[2]


def test_calibrate_row_of_an_activation_with_no_ok_child_says_so():
    from search.cli.child import _format_row, summarize
    records = [{"activation": "exp(exp(x))", "status": "diverged", "accuracy": None, "wall_s": 1.5}] * 2
    line = _format_row(summarize("exp(exp(x))", records))
    assert "range none (no ok child)" in line and "ok 0/2" in line and "statuses: diverged" in line
    ok = [{"activation": "relu", "status": "ok", "accuracy": a, "wall_s": 2.0} for a in (0.9, 0.95)]
    assert "range 0.9000 to 0.9500" in _format_row(summarize("relu", ok))


@pytest.mark.parametrize("argv, message", [
    (["train", "--activation", "sigmoid(x"], "expected ')'"),
    (["train", "--activation", "swishy"], "unknown activation 'swishy'"),
    (["train", "--activation", "relu", "--steps", "0"], "child.steps: must be from 1 to 10,000,000, got 0"),
    (["train", "--activation", "relu", "--task", "cifar10", "--model", "cnn1d"], "child.model"),
    (["train", "--activation", "relu", "--config", "no/such/config.yaml"], "no such file"),
    (["train", "--activation", "relu", "--set", "child.stepz=3"], "child.stepz: unknown setting"),
    (["calibrate", "--activations", "relu,,x"], "empty entry"),
    (["calibrate", "--activations", "relu", "--seeds", "0"], "--seeds"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_cifar_exits_2_naming_the_folder(tmp_path, capsys):
    assert main(["train", "--activation", "relu", "--task", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "cifar-10-batches-py") in err and len(err.strip().splitlines()) == 1


def test_activation_lists_split_at_top_level_commas_only():
    assert split_activations('relu, max(x, sigmoid(x)),cos(x) - x') == ["relu", "max(x, sigmoid(x))", "cos(x) - x"]
    with pytest.raises(UserError):
        split_activations("relu,")
