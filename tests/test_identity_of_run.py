"""A run's identity includes what defines its reward (issue 20 item 1): the table a replay reads and a user child's
source file are recorded when the run is created (absolute path, sha256) in the store and provenance.json; a resume
whose file changed is refused in one line naming it, and leaves the run as it was, unless --accept-changed-child, which
is recorded (run.log, store, provenance). A resume from another folder finds the files the run was created with.

The runs are made without Ray (the real driver on a LocalExecutor); the table (of a small space, on the synthetic task)
is built with one, as is a resume that trains more.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli as cli

from search.cli import MAX_ERROR_LINE
from search.loop.config import load_config
from search.loop.rundir import (
    ACCEPTED_META,
    CONFIG_FILE,
    FOLDER_META,
    LOG_FILE,
    PROVENANCE_FILE,
    SOURCES_META,
)
from search.loop.store import STORE_FILE, Store

SPACE = {"core_units": 1, "unary": ["x", "neg", "relu", "sin", "tanh", "sigmoid", "beta"], "binary": ["add", "max"]}
CHILD = '''
import torch

OFFSET = 0.0


def train(activation, seed, device, options):
    x = torch.linspace(-3, 3, 31).reshape(1, 1, -1)
    with torch.no_grad():
        y = activation(1)(x)
    return {"val_loss": min(float(((y - x * torch.sigmoid(x)) ** 2).mean()), 50.0) + OFFSET}
'''
TABLE_RUN = {"seed": 0, "space": SPACE, "controller": {"kind": "random"},
             "child": {"task": "table", "table": "tables/t.json"}, "budget": {"children": 4},
             "resources": {"cpus_per_child": 1}}
USER_RUN = {"seed": 0, "space": {"core_units": 1}, "controller": {"kind": "random"},
            "child": {"task": "code/child.py:train", "device": "cpu"}, "budget": {"children": 4},
            "resources": {"cpus_per_child": 1},
            "rewards": {"metric": "val_loss", "minimize": True, "failed": -100.0, "screened": -100.0}}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_run(folder: Path, raw: dict, monkeypatch, name: str = "run") -> Path:
    """A finished run made in ``folder`` (the current directory while it is made), its files relative to it."""
    from conftest import finish_in_process

    monkeypatch.chdir(folder)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    run_dir = folder / "results" / name
    finish_in_process(run_dir, load_config(folder / f"{name}.yaml"))
    return run_dir


@pytest.fixture(scope="module")
def table(tmp_path_factory, address) -> Path:
    """A one-seed table of a small space on the synthetic task, built by the CLI."""
    from search.cli import main  # run_cli needs capsys, which a module fixture cannot have

    folder = tmp_path_factory.mktemp("table")
    config = {"seed": 5, "space": SPACE, "controller": {"kind": "exhaustive"},
              "child": {"task": "synthetic", "noise": 0.02}, "budget": {"children": 1000},
              "resources": {"address": address}}
    (folder / "small.yaml").write_text(yaml.safe_dump(config))
    out = folder / "small.json"
    assert main(["table", "build", str(folder / "small.yaml"), "--seeds", "1", "--out", str(out), "--results",
                 str(folder / "results")]) == 0
    return out


@pytest.fixture
def table_run(table, tmp_path, monkeypatch) -> Path:
    (tmp_path / "tables").mkdir()
    shutil.copy(table, tmp_path / "tables" / "t.json")
    return make_run(tmp_path, TABLE_RUN, monkeypatch)


@pytest.fixture
def user_run(tmp_path, monkeypatch) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "child.py").write_text(CHILD)
    return make_run(tmp_path, USER_RUN, monkeypatch)


def snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in (STORE_FILE, CONFIG_FILE, PROVENANCE_FILE)}


def in_percent(path: Path) -> None:
    """The same table with its accuracies in percent (as the issue found it)."""
    data = json.loads(path.read_text())
    columns = data["columns"]
    for row in data["rows"]:
        for name in ("accuracy", "mean", "sd"):
            value = row[columns.index(name)]
            row[columns.index(name)] = [v if v is None else v * 100 for v in value] if isinstance(value, list) \
                else value if value is None else value * 100
    path.write_text(json.dumps(data))


def redated(path: Path) -> None:
    """A table still valid whose file differs: another date in its header."""
    data = json.loads(path.read_text())
    data["header"]["date"] = "2000-01-01"
    path.write_text(json.dumps(data))


def edit_child(path: Path) -> None:
    path.write_text(CHILD.replace("OFFSET = 0.0", "OFFSET = 50.0"))


# ---------------------------------------------------------------- recorded at creation

@pytest.mark.parametrize("kind", ["table", "user"])
def test_a_run_records_the_files_that_define_its_reward(kind, table, tmp_path, monkeypatch):
    if kind == "table":
        (tmp_path / "tables").mkdir()
        shutil.copy(table, tmp_path / "tables" / "t.json")
        run, field, file = make_run(tmp_path, TABLE_RUN, monkeypatch), "child.table", tmp_path / "tables" / "t.json"
    else:
        (tmp_path / "code").mkdir()
        (tmp_path / "code" / "child.py").write_text(CHILD)
        run, field, file = make_run(tmp_path, USER_RUN, monkeypatch), "child.task", tmp_path / "code" / "child.py"
    with Store.open(run, readonly=True) as store:
        sources = store.get_meta(SOURCES_META)
        assert store.get_meta(FOLDER_META) == str(tmp_path)
        assert store.get_meta(ACCEPTED_META) is None
    assert list(sources) == [field]
    assert sources[field]["path"] == str(file.resolve()) and Path(sources[field]["path"]).is_absolute()
    assert sources[field]["sha256"] == sha256(file)
    provenance = json.loads((run / PROVENANCE_FILE).read_text())
    assert provenance[SOURCES_META] == sources and provenance[FOLDER_META] == str(tmp_path)


def test_a_built_in_task_has_no_files_to_record(tmp_path, monkeypatch):
    run = make_run(tmp_path, {**TABLE_RUN, "child": {"task": "synthetic"}}, monkeypatch)
    with Store.open(run, readonly=True) as store:
        assert store.get_meta(SOURCES_META) == {}


# ---------------------------------------------------------------- refused on resume

@pytest.mark.parametrize("change, words", [(in_percent, ["t.json"]),
                                           (redated, ["child.table", "t.json", "--accept-changed-child"])],
                         ids=["in-percent", "same-table-other-bytes"])
def test_a_resume_with_a_changed_table_is_refused_and_changes_nothing(table_run, capsys, change, words):
    change(table_run.parent.parent / "tables" / "t.json")
    before = snapshot(table_run)
    for argv in (["resume", table_run, "--set", "budget.children=8"],
                 ["run", table_run.parent.parent / "run.yaml", "--resume", "--name", "run", "--results",
                  table_run.parent, "--set", "budget.children=8"]):
        code, out, err = cli(capsys, *argv)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and len(err.strip()) <= MAX_ERROR_LINE and "Traceback" not in err
        assert all(w in err for w in words), err
        assert snapshot(table_run) == before


def test_a_resume_with_an_edited_user_child_is_refused_and_changes_nothing(user_run, capsys):
    path = user_run.parent.parent / "code" / "child.py"
    edit_child(path)
    before = snapshot(user_run)
    code, _, err = cli(capsys, "resume", user_run, "--set", "budget.children=8")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "child.task" in err and str(path) in err and "--accept-changed-child" in err
    assert snapshot(user_run) == before


def test_a_resume_from_another_folder_with_another_file_there_is_refused(table_run, tmp_path, capsys, monkeypatch):
    """The same relative path from elsewhere names another file: refused, naming both."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tables").mkdir(parents=True)
    shutil.copy(tmp_path / "tables" / "t.json", elsewhere / "tables" / "t.json")
    redated(elsewhere / "tables" / "t.json")
    monkeypatch.chdir(elsewhere)
    before = snapshot(table_run)
    code, _, err = cli(capsys, "resume", table_run, "--set", "budget.children=8")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(elsewhere / "tables" / "t.json") in err and str(tmp_path / "tables" / "t.json") in err
    assert snapshot(table_run) == before


# ---------------------------------------------------------------- accepted with the flag; found from elsewhere

def test_the_flag_accepts_a_changed_child_and_records_it(user_run, capsys, address):
    path = user_run.parent.parent / "code" / "child.py"
    old = sha256(path)
    edit_child(path)
    code, out, err = cli(capsys, "resume", user_run, "--accept-changed-child", "--set", "budget.children=6",
                         "--set", f"resources.address={address}")
    assert code == 0, err
    assert "--accept-changed-child" in out and "finished: 6/6 children" in out
    with Store.open(user_run, readonly=True) as store:
        accepted = store.get_meta(ACCEPTED_META)
        assert store.get_meta(SOURCES_META)["child.task"]["sha256"] == sha256(path)
        assert store.evaluated() == 6
        rewards = [c["reward"] for c in store.candidates(("ok",))]
    assert len(accepted) == 1 and accepted[0]["field"] == "child.task" and accepted[0]["at"]
    assert accepted[0]["old"]["sha256"] == old and accepted[0]["new"]["sha256"] == sha256(path)
    assert sum(r < -49 for r in rewards) >= 1  # a child of the edited file (its loss is 50 more)
    provenance = json.loads((user_run / PROVENANCE_FILE).read_text())
    assert provenance[ACCEPTED_META] == accepted and provenance["sessions"]
    log = (user_run / LOG_FILE).read_text()
    assert f"--accept-changed-child: child.task {path}" in log and f"{old[:12]} -> {sha256(path)[:12]}" in log
    code, _, err = cli(capsys, "resume", user_run)  # the changed file is now the run's: no flag needed
    assert code == 0, err


def test_a_resume_from_another_folder_finds_the_files_it_was_created_with(table_run, tmp_path, capsys, monkeypatch,
                                                                          address):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no tables/ here: the run's folder has it
    code, out, err = cli(capsys, "resume", table_run, "--set", "budget.children=7",
                         "--set", f"resources.address={address}")
    assert code == 0, err
    with Store.open(table_run, readonly=True) as store:
        assert store.evaluated() == 7
        assert {c["status"] for c in store.candidates(("ok", "failed"))} == {"ok"}


def test_a_run_made_before_the_digests_resumes_and_records_them(table_run, capsys):
    with Store.open(table_run) as store:
        store.set_meta(SOURCES_META, None)
    with Store.open(table_run) as store:  # a meta value of null reads as absent
        assert store.get_meta(SOURCES_META) is None
    redated(table_run.parent.parent / "tables" / "t.json")  # nothing was recorded, so nothing can differ
    code, out, err = cli(capsys, "resume", table_run)
    assert code == 0 and "already complete" in out, err
    with Store.open(table_run, readonly=True) as store:
        assert store.get_meta(SOURCES_META)["child.table"]["sha256"] == sha256(table_run.parent.parent / "tables"
                                                                                / "t.json")
