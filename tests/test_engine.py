"""The one engine: a search replayed in this process (``search.loop.local``) is the search ``actsearch run`` makes on
Ray with one worker; re-training studies go through the same loop (system failures queued again, probation)."""
import io

import pytest
import yaml
from conftest import REPO, run_cli

from evaluator.result import ChildResult
from search.loop.config import load_config
from search.loop.engine import Engine, SystemicFailure
from search.loop.executor import LocalExecutor
from search.loop.local import search_local
from search.loop.progress import Progress, StopSignal
from search.loop.store import Store

TABLE = REPO / "tables" / "mnist1d-150.json"


def _rows(store: Store) -> list[tuple]:
    return [(c["index"], c["tokens"], c["status"], c["reward"], c["seed"], c["duplicate_of"])
            for c in store.candidates()]


@pytest.mark.parametrize("kind", ["ppo", "evolution"])
def test_a_replay_in_process_is_the_run_on_ray_with_one_worker(tmp_path, capsys, address, one_thread, kind):
    raw = {"seed": 11, "space": {"core_units": 1}, "controller": {"kind": kind, "batch_size": 4},
           "child": {"task": "table", "table": str(TABLE)}, "budget": {"children": 40},
           "resources": {"address": address, "max_in_flight": 1}}
    if kind != "ppo":
        raw["controller"] = {"kind": kind}
    (tmp_path / "replay.yaml").write_text(yaml.safe_dump(raw))
    code, out, err = run_cli(capsys, "run", tmp_path / "replay.yaml", "--name", "replay", "--results",
                             tmp_path / "results")
    assert code == 0, err
    local = search_local(load_config(tmp_path / "replay.yaml"), capacity=1)
    with Store.open(tmp_path / "results" / "replay", readonly=True) as store:
        on_ray = _rows(store)
        updates = [u["consumed"] for u in store.updates()]
    assert local["outcome"] == "finished" and local["evaluated"] == 40
    assert _rows(local["store"]) == on_ray
    assert [u["consumed"] for u in local["updates"]] == updates
    assert kind != "ppo" or len(updates) >= 5  # the policy learned along the way, identically


def _study(config, jobs, executor):
    from search.analysis.retrain import retrain

    store = Store.in_memory()
    store.record_study("s", config.to_dict()["child"], [])
    progress = Progress(io.StringIO(), io.StringIO(), 60)
    return store, retrain(config, "s", store, progress, jobs, executor)


def _synthetic(tmp_path, **child):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"child": {"task": "synthetic", **child},
                                                     "resources": {"system_retries": 2}}))
    return load_config(tmp_path / "c.yaml")


def test_a_study_trains_every_job_once_through_the_engine(tmp_path):
    config = _synthetic(tmp_path, noise=0.05)
    jobs = [(a, s) for s in range(3) for a in ("relu", "x * sigmoid(x)", "exp(exp(exp(x)))")]
    store, (outcome, recorded) = _study(config, jobs, LocalExecutor(config, capacity=2))
    assert (outcome, recorded) == ("complete", 9)
    rows = store.retrainings("s")
    assert sorted((r["activation"], r["seed_number"]) for r in rows) == sorted(jobs)
    assert {r["status"] for r in rows if r["activation"] == "exp(exp(exp(x)))"} == {"diverged"}
    seeds = {r["seed_number"]: r["seed"] for r in rows}
    assert all(r["seed"] == seeds[r["seed_number"]] for r in rows)  # paired: one child seed per seed number


class _FlakyExecutor(LocalExecutor):
    """Loses every child the first ``losses`` times it runs (a worker that dies), then trains it."""

    def __init__(self, config, losses):
        super().__init__(config, capacity=1)
        self.losses, self.calls = losses, {}

    def poll(self, timeout):
        out = []
        for key, activation, seed in self._queued:
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.calls[key] <= self.losses:
                out.append((key, ChildResult.failed(activation, seed, "worker died", "system")))
            else:
                out.append((key, self._train(self.config.child, activation, seed)))
        self._queued = []
        return out


@pytest.mark.parametrize("losses, status", [(2, "ok"), (3, "failed")])
def test_a_study_queues_a_system_failure_again_like_a_search(tmp_path, losses, status):
    config = _synthetic(tmp_path)  # resources.system_retries: 2
    store, (outcome, _) = _study(config, [("relu", 0)], _FlakyExecutor(config, losses))
    assert outcome == "complete" and [r["status"] for r in store.retrainings("s")] == [status]


def test_probation_stops_a_broken_setup_in_process(tmp_path):
    from search.loop.driver import Driver

    config = _synthetic(tmp_path)
    executor = LocalExecutor(config, capacity=2)
    executor._train = lambda settings, activation, seed, search_path=None: ChildResult.failed(  # all fail one way
        activation, seed, "OSError: no data at /nowhere", "candidate")
    store = Store.in_memory()
    progress = Progress(io.StringIO(), io.StringIO(), 60)
    driver = Driver(None, config, store, progress)
    driver.restore()
    with pytest.raises(SystemicFailure, match="the first 3 children all failed with: OSError"), \
            StopSignal(print) as stop:
        Engine(executor, driver, progress, config.rewards, probation=True).run(stop)
    assert store.evaluated() == 0  # nothing of a broken setup is recorded


class _VanishingExecutor(LocalExecutor):
    """Trains ``before`` children, then every child is lost as when the Ray cluster is stopped under the search
    (a system failure), and ``lost`` says so."""

    def __init__(self, config, capacity, before):
        super().__init__(config, capacity=capacity)
        self.before, self.trained = before, 0

    def poll(self, timeout):
        out = []
        for key, activation, seed in self._queued:
            if self.trained < self.before:
                self.trained += 1
                out.append((key, self._train(self.config.child, activation, seed)))
            else:
                out.append((key, ChildResult.failed(activation, seed, "system failure: LocalRayletDiedError", "system")))
        self._queued = []
        return out

    def lost(self, result):
        return "the Ray cluster at 10.0.0.1:6379 stopped answering" if self.trained >= self.before else None


def test_a_cluster_that_goes_away_stops_the_session_and_a_resume_makes_the_same_search(tmp_path):
    """A Ray cluster stopped under a search: the driver went on launching children into it, each lost child queued
    again until its system retries were spent and then recorded as a failure (a penalty for the candidate), and Ray
    ended the process a minute later (exit 1). Now the session stops at the first lost child, recording none of them,
    and a resume trains them: the search is the one an uninterrupted run makes."""
    from search.loop.driver import Driver

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "seed": 3, "space": {"core_units": 1}, "controller": {"kind": "random"},
        "child": {"task": "synthetic", "noise": 0.02}, "budget": {"children": 24}, "resources": {"system_retries": 2}}))
    config = load_config(tmp_path / "c.yaml")
    store = Store.in_memory()
    log = io.StringIO()
    progress = Progress(io.StringIO(), log, 60)
    driver = Driver(None, config, store, progress)
    driver.restore()
    with StopSignal(print) as stop, _VanishingExecutor(config, 4, before=9) as executor:
        assert Engine(executor, driver, progress, config.rewards, config.resources.system_retries).run(stop) \
            == "interrupted"
    assert store.evaluated() == 9 and store.counts()["failed"] == 0
    assert "stopped answering; the session stops" in log.getvalue() and "queued again" not in log.getvalue()
    driver = Driver(None, config, store, progress)
    driver.restore()
    with StopSignal(print) as stop, LocalExecutor(config, capacity=4) as executor:
        assert Engine(executor, driver, progress, config.rewards).run(stop) == "finished"
    uninterrupted = search_local(config, capacity=4)["store"]
    assert _rows(store) == _rows(uninterrupted) and store.audit() == []


class _SilentHeadExecutor(LocalExecutor):
    """Trains the first ``before`` children; then its cluster's head is gone, and Ray retries the children in flight
    without a result (no child's failure says so) until lost_now notices."""

    def __init__(self, config, capacity, before):
        super().__init__(config, capacity=capacity)
        self.before, self.trained, self.polls = before, 0, 0

    def poll(self, timeout):
        out = []
        while self._queued and self.trained < self.before:
            key, activation, seed = self._queued.pop(0)
            self.trained += 1
            out.append((key, self._train(self.config.child, activation, seed)))
        if self.trained >= self.before:
            self.polls += 1
        return out

    def lost_now(self):
        return "the Ray cluster at 10.0.0.1:6379 stopped answering" if self.polls >= 3 else None


def test_a_head_that_stops_while_ray_retries_its_children_stops_the_session(tmp_path):
    """A cluster's head stopped mid-run: Ray kept the children's tasks waiting to retry, so no failure came back, and
    the driver hung a minute until Ray ended it (exit 1, Ray's message). The session now asks the head itself."""
    from search.loop.driver import Driver

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "seed": 3, "space": {"core_units": 1}, "controller": {"kind": "random"},
        "child": {"task": "synthetic", "noise": 0.02}, "budget": {"children": 24}}))
    config = load_config(tmp_path / "c.yaml")
    store, log = Store.in_memory(), io.StringIO()
    progress = Progress(io.StringIO(), log, 60)
    driver = Driver(None, config, store, progress)
    driver.restore()
    with StopSignal(print) as stop, _SilentHeadExecutor(config, 4, before=9) as executor:
        assert Engine(executor, driver, progress, config.rewards).run(stop) == "interrupted"
        assert executor.polls == 3  # it stopped at the first poll that found the head gone
    assert store.evaluated() == 9 and store.counts().get("failed", 0) == 0 and store.audit() == []
    assert "stopped answering; the session stops" in log.getvalue()


def test_the_pool_asks_a_clusters_head_every_few_seconds(monkeypatch):
    import socket

    from search.loop import pool as pool_module
    from search.loop.config import config_from_dict
    from search.loop.pool import ChildPool

    monkeypatch.setattr(pool_module, "HEAD_CHECK_EVERY_S", 0.0)
    pool = ChildPool(config_from_dict({"child": {"task": "synthetic"}}))
    assert pool.lost_now() is None  # embedded: no head to ask
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        pool._head = f"127.0.0.1:{listening.getsockname()[1]}"
        assert pool.lost_now() is None  # it answers
    assert "stopped answering" in pool.lost_now()  # the same port, closed
    assert pool.lost_now() is None and pool._gone  # said once


def test_the_pool_knows_a_lost_cluster_from_a_lost_worker():
    """ChildPool.lost: this machine's Ray node dying, or a cluster head that no longer answers, is the end of the
    session; any other system failure (a worker or another node died) is Ray's to retry."""
    import socket

    from search.loop.config import config_from_dict
    from search.loop.pool import ChildPool

    pool = ChildPool(config_from_dict({"child": {"task": "synthetic"}}))
    worker = ChildResult.failed("relu", 0, "system failure after 3 retries: WorkerCrashedError", "system")
    worker.extra["ray_error"] = "WorkerCrashedError"
    raylet = ChildResult.failed("relu", 0, "system failure after 3 retries: LocalRayletDiedError", "system")
    raylet.extra["ray_error"] = "LocalRayletDiedError"
    assert pool.lost(worker) is None  # embedded Ray, a worker died
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        pool._head = f"127.0.0.1:{listening.getsockname()[1]}"
        assert pool.lost(worker) is None  # the head answers
    assert "stopped answering" in pool.lost(worker)  # the same port, closed
    pool = ChildPool(config_from_dict({"child": {"task": "synthetic"}}))
    assert "this machine's Ray node died" in pool.lost(raylet)


USER_CHILDREN = ("def nan(activation, seed, device, options):\n    return {'val_loss': float('nan')}\n\n"
                 "def fine(activation, seed, device, options):\n    return {'val_loss': 0.5}\n")
LOSS = {"minimize": True, "failed": -9.0, "screened": -9.0}


@pytest.mark.parametrize("child, rewards, says", [
    ({"task": "children.py:fine"}, {"metric": "val_los", **LOSS}, "the child returned no metric 'val_los'"),
])
def test_a_reward_no_child_can_give_is_a_broken_setup(tmp_path, monkeypatch, child, rewards, says):
    from search.loop.driver import Driver

    (tmp_path / "children.py").write_text(USER_CHILDREN)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"child": child, "rewards": rewards,
                                                     "budget": {"children": 20}}))
    config = load_config(tmp_path / "c.yaml")
    store, progress = Store.in_memory(), Progress(io.StringIO(), io.StringIO(), 60)
    driver = Driver(None, config, store, progress)
    driver.restore()
    with pytest.raises(SystemicFailure, match=says), StopSignal(print) as stop:
        Engine(LocalExecutor(config, capacity=2), driver, progress, config.rewards, probation=True).run(stop)
    assert store.evaluated() == 0


def _user_search(tmp_path, monkeypatch, source: str, task: str, children: int, probation: bool = False):
    """A random search of ``children`` children of the user child ``task`` (in children.py, ``source``) minimising
    val_loss, trained in this process; its store and what it showed."""
    from search.loop.driver import Driver

    (tmp_path / "children.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"child": {"task": f"children.py:{task}"},
                                                     "rewards": {"metric": "val_loss", **LOSS},
                                                     "controller": {"kind": "random"}, "budget": {"children": children}}))
    config = load_config(tmp_path / "c.yaml")
    shown = io.StringIO()
    store, progress = Store.in_memory(), Progress(shown, io.StringIO(), 60)
    driver = Driver(None, config, store, progress)
    driver.restore()
    with StopSignal(print) as stop:
        Engine(LocalExecutor(config, capacity=2), driver, progress, config.rewards, probation=probation).run(stop)
    return store, shown.getvalue()


def test_a_non_finite_metric_is_a_divergence_a_result_not_a_broken_setup(tmp_path, monkeypatch):
    """A user's child whose loss is nan diverged, as a built-in child with a nan loss does: the search goes on (the
    first three such children stopped it as a broken setup)."""
    store, shown = _user_search(tmp_path, monkeypatch, USER_CHILDREN, "nan", 6, probation=True)
    assert store.counts().get("diverged") == 6 and store.evaluated() == 6
    assert all("val_loss is nan" in c["reason"] for c in store.candidates(("diverged",)))
    assert "new best" not in shown and store.best() is None  # a penalty is no best (it said val_loss 9)


def test_a_trained_child_worse_than_the_penalties_is_warned_about_once(tmp_path, monkeypatch):
    """With an unbounded loss, failed children (penalty -9) outranked children that trained to val_loss 170 and
    1.4e25, and nothing said so."""
    big = "def big(activation, seed, device, options):\n    return {'val_loss': 170.5}\n"
    _, shown = _user_search(tmp_path, monkeypatch, big, "big", 4)
    assert shown.count("is worse than the penalties (rewards.failed -9") == 1, shown


def test_one_error_reported_with_different_ids_is_one_error():
    from search.loop.engine import same_error

    assert same_error("TaskCancelledError: task 3f2a9c81d4e5 cancelled after 12.5 s") == \
        same_error("TaskCancelledError: task 9b1c77aa0e12 cancelled after 3 s")
    assert same_error("OSError: no data") != same_error("ValueError: bad shape")
