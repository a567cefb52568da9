"""`actsearch run` / `actsearch resume` end to end on a local Ray, with tiny budgets (synthetic task, one real child)."""
import json
import os
from pathlib import Path

import pytest
import ray
import torch
import yaml
from conftest import run_cli

from evaluator.result import ChildResult
from search.language.space import Space
from search.loop.config import child_seed, load_config
from search.loop.rundir import CHECKPOINT_DIR, CHECKPOINT_FILE
from search.loop.store import CHILD_STATUSES, Store


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # its own, whatever else runs
    yield
    ray.shutdown()


def write_config(tmp_path: Path, name: str = "search.yaml", **sections) -> Path:
    base = {"seed": 0, "space": {"core_units": 1}, "controller": {"kind": "ppo", "batch_size": 8},
            "child": {"task": "synthetic", "noise": 0.01}, "budget": {"children": 30},
            "resources": {"cpus_per_child": 1}}
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp_path / name
    path.write_text(yaml.safe_dump(base))
    return path




def snapshot(run_dir: Path) -> dict:
    with Store.open(run_dir, readonly=True) as store:
        return {"candidates": store.candidates(), "updates": store.updates(), "sessions": len(store.sessions())}


def test_synthetic_search_end_to_end(local_ray, tmp_path, capsys):
    results = tmp_path / "results"
    code, out, err = run_cli(capsys, "run", write_config(tmp_path), "--name", "syn", "--results", results)
    assert code == 0, err
    run_dir = results / "syn"
    assert "finished: 30/30 children" in out
    assert "rank  reward  status  expression" in out  # the top-10 table
    table = out[out.index("rank  reward"):].strip().splitlines()
    assert len(table) == 2 + 10
    # the last "new best" names the best function as the table's first row writes it (not another text of it)
    last_best = [line for line in out.splitlines() if line.startswith("new best")][-1]
    assert last_best.split(None, 4)[4] in table[2]

    with Store.open(run_dir, readonly=True) as store:
        assert store.audit() == []
        assert store.evaluated() == 30
        assert store.open_candidates() == []
        children = store.candidates(CHILD_STATUSES)
        assert all(c["seed"] == child_seed(0, c["index"]) for c in children)
        assert all(c["node"] and c["metrics"]["activation"] == c["text"] for c in children)
        assert all(c["reward"] == c["metrics"]["accuracy"] for c in children if c["status"] == "ok")
        # PPO updates on every 8th reward it is told (screened and duplicate rewards count too).
        assert store.update_count() == len(store.told()) // 8 >= 3
        top = store.top(10)
        assert [r["reward"] for r in top] == sorted((c["reward"] for c in children), reverse=True)[:10]
        session = store.sessions()[-1]
        assert session["outcome"] == "finished" and session["driver_cpu_s"] > 0

    checkpoint = torch.load(run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["version"] == len(snapshot(run_dir)["updates"])
    assert load_config(run_dir / "config.yaml") == load_config(write_config(tmp_path))
    provenance = json.loads((run_dir / "provenance.json").read_text())
    for key in ("actsearch", "git_commit", "torch", "ray", "python", "sessions", "child_devices"):
        assert key in provenance
    assert provenance["ray"] == ray.__version__ and provenance["sessions"][0]["outcome"] == "finished"
    log = (run_dir / "run.log").read_text()
    assert "controller update 1:" in log and "session 1 ended: finished" in log


def test_a_space_too_large_to_enumerate_where_nothing_trains_ends_saying_so(local_ray, tmp_path, capsys):
    """2.4 million token strings, none of them a function that passes the screen: the run cannot know that before it
    starts (an enumerable one is refused then), so it ends saying no child trained and why."""
    config = write_config(tmp_path, space={"core_units": 4, "unary": ["x", "neg"], "binary": ["add", "sub"]},
                          controller={"kind": "random"}, budget={"children": 5})
    code, out, err = run_cli(capsys, "run", config, "--name", "dry", "--results", tmp_path / "results")
    assert code == 0, err
    assert "0/5 children" in out
    assert "no child trained: none of the" in err and "passed the screen" in err


def test_existing_name_is_refused_with_a_hint_and_left_alone(local_ray, tmp_path, capsys):
    results = tmp_path / "results"
    config = write_config(tmp_path, budget={"children": 4})
    assert run_cli(capsys, "run", config, "--name", "twice", "--results", results)[0] == 0
    before = snapshot(results / "twice")
    code, out, err = run_cli(capsys, "run", config, "--name", "twice", "--results", results)
    assert code == 2
    assert "already exists" in err and f"actsearch resume {results / 'twice'}" in err
    assert snapshot(results / "twice") == before


def test_resuming_a_finished_run_changes_nothing(local_ray, tmp_path, capsys):
    results = tmp_path / "results"
    config = write_config(tmp_path, budget={"children": 6})
    assert run_cli(capsys, "run", config, "--name", "done", "--results", results)[0] == 0
    before = snapshot(results / "done")
    code, out, _ = run_cli(capsys, "resume", results / "done")
    assert code == 0 and "already complete (6/6 children)" in out and "rank  reward" in out
    code, out, _ = run_cli(capsys, "run", config, "--name", "done", "--results", results, "--resume")
    assert code == 0 and "already complete" in out
    code, out, _ = run_cli(capsys, "resume", results / "done", "--set", "budget.children=4")
    assert code == 0 and "complete: 6 (budget 4) children" in out and "6/4" not in out
    assert snapshot(results / "done") == before
    # a resume raised the run's budget and was stopped before it: the config file's budget (make run) has nothing to
    # do, and says which command goes on to the run's own
    from search.loop.config import config_with_overrides
    from search.loop.rundir import write_run_config

    write_run_config(results / "done", config_with_overrides(load_config(config), ["budget.children=9"]))
    code, out, _ = run_cli(capsys, "run", config, "--name", "done", "--results", results, "--resume")
    assert code == 0 and "already complete (6/6 children)" in out
    assert f"the run's own budget is 9 children: `actsearch resume {results / 'done'}` continues to it" in out


def test_resume_extends_the_budget_but_not_the_search(local_ray, tmp_path, capsys):
    results = tmp_path / "results"
    run_dir = results / "grow"
    assert run_cli(capsys, "run", write_config(tmp_path, budget={"children": 5}), "--name", "grow",
                   "--results", results)[0] == 0
    code, _, err = run_cli(capsys, "resume", run_dir, "--set", "child.noise=0.5")
    assert code == 2 and "only budget.* and resources.*" in err
    code, _, err = run_cli(capsys, "run", write_config(tmp_path, child={"noise": 0.5}), "--name", "grow",
                           "--results", results, "--resume")
    assert code == 2 and "child.noise" in err
    code, out, _ = run_cli(capsys, "resume", run_dir, "--set", "budget.children=12", "--set", "confirm.seeds=9")
    assert code == 0 and "finished: 12/12 children" in out
    with Store.open(run_dir, readonly=True) as store:
        assert store.evaluated() == 12 and store.audit() == [] and len(store.sessions()) == 2
    # written when the session started, confirm's too (a session stopped in its search kept the old confirm.seeds)
    assert load_config(run_dir / "config.yaml").budget.children == 12
    assert load_config(run_dir / "config.yaml").confirm.seeds == 9 and "confirm.seeds: 10 -> 9" in out


def test_a_run_that_is_being_driven_cannot_be_driven_twice(local_ray, tmp_path, capsys):
    from filelock import FileLock

    results = tmp_path / "results"
    run_dir = results / "busy"
    assert run_cli(capsys, "run", write_config(tmp_path, budget={"children": 2}), "--name", "busy",
                   "--results", results)[0] == 0
    with FileLock(str(run_dir / "run.lock")):  # what a live driver holds
        code, _, err = run_cli(capsys, "resume", run_dir, "--set", "budget.children=4")
        assert code == 2 and "being run by another process" in err
        assert load_config(run_dir / "config.yaml").budget.children == 2  # untouched under a live driver
    code, out, _ = run_cli(capsys, "resume", run_dir, "--set", "budget.children=4")
    assert code == 0 and "finished: 4/4 children" in out


def test_exhaustive_search_trains_each_distinct_function_once(local_ray, tmp_path, capsys):
    unary, binary = ["x", "neg", "relu", "tanh", "square"], ["add", "max", "mul"]
    config = write_config(tmp_path, space={"core_units": 1, "unary": unary, "binary": binary},
                          controller={"kind": "exhaustive"}, budget={"children": 1000})
    code, out, _ = run_cli(capsys, "run", config, "--name", "all", "--results", tmp_path / "results")
    assert code == 0 and "exhausted" in out
    space = Space(1, tuple(unary), tuple(binary))
    distinct = {}
    for tokens in space.enumerate():
        expr = space.decode(tokens)
        distinct.setdefault(expr.fingerprint(), expr.screen().ok)
    with Store.open(tmp_path / "results" / "all", readonly=True) as store:
        trained = {c["fingerprint"] for c in store.candidates(CHILD_STATUSES)}
        assert trained == {fp for fp, ok in distinct.items() if ok}
        assert store.audit() == []


def test_a_real_mnist1d_child_trains_on_a_worker(local_ray, tmp_path, capsys):
    config = write_config(tmp_path, controller={"kind": "random"}, budget={"children": 2},
                          child={"task": "mnist1d", "steps": 20, "train_size": 256, "val_size": 128, "threads": 1,
                                 "data_dir": str(tmp_path / "data"), "device": "cpu"})
    code, out, err = run_cli(capsys, "run", config, "--name", "real", "--results", tmp_path / "results")
    assert code == 0, err
    with Store.open(tmp_path / "results" / "real", readonly=True) as store:
        children = store.candidates(CHILD_STATUSES)
        assert len(children) == 2
        for child in children:
            assert child["status"] == "ok", child["metrics"]
            assert 0 <= child["reward"] <= 1 and child["metrics"]["steps"] == 20
            assert child["metrics"]["device"] == "cpu" and child["metrics"]["split"] == "val"


def test_a_broken_setup_stops_the_run_instead_of_spending_the_budget(local_ray, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    # one child at a time: none is in flight when the third failure stops the run, so none is cancelled (Ray 2.60's
    # driver can abort when a cancel meets a task being handed to a worker: "Tried to complete task that was not
    # pending", which took a test process down)
    config = write_config(tmp_path, controller={"kind": "random"}, budget={"children": 20},
                          child={"task": "mnist1d", "steps": 5, "data_dir": str(blocker / "data")},
                          resources={"max_in_flight": 1})
    code, _, err = run_cli(capsys, "run", config, "--name", "broken", "--results", tmp_path / "results")
    assert code == 2
    assert "the first 3 children all failed with: UserError: child.data_dir" in err
    assert "actsearch resume" in err
    with Store.open(tmp_path / "results" / "broken", readonly=True) as store:
        assert store.evaluated() == 0  # held back, not recorded: a resume after the fix trains them


def test_a_child_over_its_time_limit_is_recorded_as_timeout(local_ray, tmp_path, capsys):
    config = write_config(tmp_path, controller={"kind": "random"}, budget={"children": 2}, child={"delay_s": 30},
                          resources={"child_timeout_s": 1.0}, rewards={"failed": 0.125})
    code, out, err = run_cli(capsys, "run", config, "--name", "slow", "--results", tmp_path / "results")
    assert code == 0, err
    with Store.open(tmp_path / "results" / "slow", readonly=True) as store:
        children = store.candidates(CHILD_STATUSES)
        assert [c["status"] for c in children] == ["timeout", "timeout"]
        # stopped by its worker's timer, not force-cancelled by the driver (Ray's driver can abort on that race)
        assert all(c["reward"] == 0.125 and "stopped on its worker after 1 s" in c["reason"] for c in children)
        assert all(c["attempts"] == 3 for c in children)  # a timeout is the system's: queued again twice first


def test_a_child_that_raises_or_loses_its_worker_is_a_failed_result(local_ray):
    from search.loop.pool import child_result

    @ray.remote(max_retries=0)
    def raises():
        raise ZeroDivisionError("the candidate blew up")

    @ray.remote(max_retries=0)
    def dies():
        os._exit(1)  # the worker process vanishes, as when a node goes down

    @ray.remote
    def garbage():
        return {"status": "great"}

    result = child_result(raises.remote(), "x * sigmoid(x)", 7, "val", max_retries=0)
    assert result.status == "failed" and result.error == "ZeroDivisionError: the candidate blew up"
    assert result.activation == "x * sigmoid(x)" and result.seed == 7 and result.accuracy is None
    assert result.system_failure
    result = child_result(dies.remote(), "relu(x)", 1, "val", max_retries=0)
    assert result.status == "failed" and result.error.startswith("system failure after 0 retries")
    result = child_result(garbage.remote(), "relu(x)", 1, "val", max_retries=0)
    assert result.status == "failed" and "malformed result record" in result.error and result.system_failure


class HandPool:
    """A stand-in for the Ray child pool: the test plays the workers (``launch_next`` submits, ``deliver``
    delivers)."""

    def __init__(self):
        self.held, self.submitted = [], []

    def __len__(self):
        return 0

    def capacity(self):
        return 1

    def has_room(self):
        return True

    def submit(self, key, activation, seed, name="child"):
        self.submitted.append(key)

    def cancel_all(self):
        return []

    def lost(self, result):
        return None


def _driver(tmp_path: Path, **sections):
    """A Driver on a fresh (or the existing) run directory, driven by hand (no Ray)."""
    import io

    from search.loop.driver import Driver
    from search.loop.engine import Engine
    from search.loop.progress import Progress
    from search.loop.rundir import create_run

    sections.setdefault("schedule", {"mode": "asynchronous"})  # the test plays the workers: told as delivered
    config = load_config(write_config(tmp_path, **sections))
    run_dir = tmp_path / "run"
    if not run_dir.exists():
        create_run(run_dir, config)
    store = Store.open(run_dir)
    progress = Progress(io.StringIO(), io.StringIO(), 60)
    driver = Driver(run_dir, config, store, progress)
    driver.restore()
    return Engine(HandPool(), driver, progress, config.rewards, config.resources.system_retries), store


def _launch_next(engine) -> int:
    """Dispatch the next queued candidate (asking the proposer until one is queued); returns its index."""
    while not engine.work.ready:
        engine.work.ask(1)
    engine.dispatch()
    return engine.executor.submitted[-1]


def test_a_system_failure_is_retried_and_never_becomes_the_functions_reward(tmp_path):
    from search.loop.pool import lost_child

    sections = {"controller": {"kind": "random"}, "resources": {"cpus_per_child": 1, "system_retries": 2}}
    engine, store = _driver(tmp_path, **sections)
    driver = engine.work
    index = _launch_next(engine)
    fp = driver.fps[index]
    lost = lost_child("failed", "system failure after 3 retries: WorkerCrashedError", driver.texts[index], 1,
                          "val")
    for attempt in range(2):  # re-queued, not recorded: the same candidate trains again with the same seed
        engine.deliver(index, lost)
        assert list(driver.ready) == [index] and store.candidate(index)["status"] == "running"
        assert driver.book.judge(driver.space.decode(driver.open[index].tokens)).status == "pending"
        assert _launch_next(engine) == index
    assert store.candidate(index)["attempts"] == 3
    engine.deliver(index, lost)  # retries spent: recorded as failed, but the function keeps no reward
    row = store.candidate(index)
    assert row["status"] == "failed" and row["metrics"]["fault"] == "system"
    assert driver.book.judge(driver.space.decode(row["tokens"])).status == "new"
    store.close()
    resumed, store = _driver(tmp_path, **sections)  # after a resume too
    assert fp not in resumed.work.book.rewards
    store.close()


def test_a_candidates_own_failure_is_its_functions_reward(tmp_path):
    engine, store = _driver(tmp_path, controller={"kind": "random"})
    driver = engine.work
    index = _launch_next(engine)
    engine.deliver(index, ChildResult.diverged(driver.texts[index], 1, "non-finite training loss by step 3"))
    assert not driver.ready and store.candidate(index)["status"] == "diverged"
    judged = driver.book.judge(driver.space.decode(store.candidate(index)["tokens"]))
    assert judged.status == "duplicate" and judged.reward == driver.config.rewards.failed
    store.close()


def test_address_auto_without_a_cluster_is_one_line_before_the_run_exists(tmp_path, capsys, monkeypatch):
    """paper.yaml's `address: auto` on a machine with no Ray cluster: the run directory was created, then the session
    failed, and the same command was refused next time ("already exists"). Ray finds no cluster (as where none runs:
    ``auto`` would find any Ray this machine runs, another test's too)."""
    import ray._private.services as services

    def none_found(address, temp_dir=None):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(services, "canonicalize_bootstrap_address", none_found)
    config = write_config(tmp_path, resources={"address": "auto"})
    code, _, err = run_cli(capsys, "run", config, "--results", tmp_path / "r")
    assert code == 2 and "auto finds no Ray cluster on this machine" in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_address_auto_does_not_join_another_commands_own_ray(tmp_path, capsys, monkeypatch):
    """With no `ray start` cluster, Ray's last resort for auto is any Ray process on the machine: a run joined another
    command's embedded Ray and lost its cluster when that command ended."""
    import ray._private.services as services
    import ray._private.utils as ray_utils

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda temp_dir=None: None)  # no cluster file
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: {"127.0.0.1:53123"})  # another command's Ray
    config = write_config(tmp_path, resources={"address": "auto"})
    code, _, err = run_cli(capsys, "run", config, "--results", tmp_path / "r")
    assert code == 2 and "auto finds no Ray cluster on this machine" in err, err
    assert not (tmp_path / "r").exists()


def test_a_session_whose_machines_would_run_another_kernel_than_the_runs_children_is_refused(tmp_path):
    """A resume on a machine that cannot build the native kernel ran the rest of the run eager, with nothing but a
    warning: the same candidate and seed trained to another reward. The run's children say which kernel they ran."""
    from search.language.errors import UserError
    from search.loop.config import config_from_dict
    from search.loop.rundir import create_run
    from search.loop.session import same_kernel

    run = tmp_path / "run"
    create_run(run, config_from_dict({"seed": 1, "child": {"task": "synthetic"}}))
    with Store.open(run) as store:
        same_kernel(store, ["eager"], "this machine")  # no child yet: any kernel starts the run
        store.record_ask(3, [{"index": i, "tokens": ["x"] * 5, "text": t, "fingerprint": f"fp{i}", "logp": None,
                              "policy_version": 0, "proposal": {}} for i, t in enumerate(["sin(x)", "tanh(x)", "x"])])
        for i, kernel in enumerate(["native", "native", "torch"]):
            store.record_launch(i, seed=i)
            store.record_result(i, "ok", 0.5, metrics={"accuracy": 0.5, "kernel": kernel})
        assert store.child_kernels() == {"native": 2, "torch": 1}
        same_kernel(store, ["native", "torch"], "this machine")
        with pytest.raises(UserError, match="ran with the native kernel, this machine would run the eager one"):
            same_kernel(store, ["eager"], "this machine")
        with pytest.raises(UserError, match=r"different kernels \(eager, native\)"):
            same_kernel(store, ["native", "eager"], "the cluster's nodes")
