"""A search on a multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and 2 worker nodes on this machine)
keeps going when a worker node dies under running children: Ray reruns them elsewhere and nothing is lost."""
import os
import threading
import time

import pytest
import ray
import yaml

from search.cli import main
from search.loop.store import CHILD_STATUSES, Store

BUDGET = 10


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray.cluster_utils import Cluster

    try:
        # Quick health checks so the dead node is noticed in about a second rather than ~20 s.
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": False,  # children run only on the worker nodes
            "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                               "health_check_failure_threshold": 2}})
    except Exception as exc:  # a sandbox without the sockets / processes a cluster needs
        pytest.skip(f"ray.cluster_utils.Cluster cannot start here: {exc}")
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def test_a_worker_node_dies_under_running_children_and_the_run_completes(cluster, tmp_path, capsys):
    cluster, (survivor, doomed) = cluster
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({  # children of 1.5 s: long enough to be caught running
        "controller": {"kind": "random"}, "child": {"task": "synthetic", "delay_s": 1.5}, "budget": {"children": BUDGET},
        # asynchronous: the store's "running" then means running (deterministic scheduling keeps a result that
        # arrived early in memory, its child still "running" in the store, until its turn to be told)
        "schedule": {"mode": "asynchronous"},
        "resources": {"address": cluster.address, "cpus_per_child": 1, "max_retries": 3}}))
    run_dir = tmp_path / "results" / "cluster"
    removed = {}

    def kill_a_node_under_running_children():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with Store.open(run_dir, readonly=True) as store:
                    nodes = {c["node"] for c in store.candidates(CHILD_STATUSES)}
                    if doomed.node_id in nodes and store.counts()["running"] == 2:
                        removed["at"] = time.time()
                        cluster.remove_node(doomed, allow_graceful=False)
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_node_under_running_children)
    killer.start()
    code = main(["run", str(config), "--name", "cluster", "--results", str(tmp_path / "results")])
    killer.join()
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "at" in removed, "the worker node was never removed"
    assert f"finished: {BUDGET}/{BUDGET} children" in out.out

    with Store.open(run_dir, readonly=True) as store:
        assert store.audit() == []
        children = store.candidates(CHILD_STATUSES)
        assert len(children) == BUDGET
        assert all(c["status"] == "ok" for c in children)  # a dead node is a system failure: retried, not failed
        caught = [c for c in children if c["started_at"] <= removed["at"] <= c["finished_at"]]
        # Two children were running, one on each 1-CPU worker; both finished, so the doomed node's one ran again
        # on the survivor.
        assert len(caught) == 2 and all(c["node"] == survivor.node_id for c in caught)
        assert not [c for c in children if c["node"] == doomed.node_id and c["finished_at"] > removed["at"]]


def test_an_embedded_search_starts_its_own_ray_while_a_cluster_runs_on_the_machine(cluster, tmp_path):
    """resources.address '' is a Ray of the search's own. ray.init() without an address joins the cluster whose
    address `ray start` (here: the fixture's cluster) left in /tmp/ray: CI once saw a search join another test's
    cluster ("the Ray cluster has 0 CPU", its head has none) and die when that cluster shut down."""
    import subprocess
    import sys

    from conftest import REPO

    config = tmp_path / "own.yaml"
    config.write_text("seed: 0\nspace: {core_units: 1}\ncontroller: {kind: random}\nchild: {task: synthetic}\n"
                      "budget: {children: 4}\nresources: {address: '', cpus_per_child: 1, num_cpus: 0}\n"
                      "confirm: {enabled: false}\n")
    done = subprocess.run([sys.executable, "-m", "search.cli", "run", str(config), "--results", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (tmp_path / "own" / "run.log").read_text()
    assert "Ray: 1 node(s)" in log, log[-2000:]  # not the fixture's 3


def test_every_node_a_child_fits_on_builds_the_kernel_before_the_first_child(cluster):
    """On a cluster each node builds (or loads) the children's activation kernel before any child starts, not inside
    its first child's deadline; the head, where no child fits (0 CPU), builds nothing, nor does a task without a
    network."""
    from search.language import native
    from search.loop.config import config_from_dict
    from search.loop.pool import ChildPool

    cluster, workers = cluster
    alive = [w for w in workers if w.node_id in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}]
    config = config_from_dict({"child": {"task": "mnist1d"},
                               "resources": {"address": cluster.address, "cpus_per_child": 1}})
    with ChildPool(config) as pool:
        prepared = pool.prepare_nodes()
    assert sorted(p["node"] for p in prepared) == sorted(w.node_id for w in alive)
    assert {p.get("kernel") for p in prepared} == {"native" if native.available() else "eager"}
    with ChildPool(config_from_dict({"child": {"task": "synthetic"},
                                     "resources": {"address": cluster.address}})) as pool:
        assert pool.prepare_nodes() == []


def test_nodes_that_cannot_prepare_in_time_leave_it_to_their_first_child(cluster, monkeypatch):
    """A node with no room for the build (another job's work holds its CPUs) or a stuck build does not hold the
    search: past the preparation's time limit the driver says so per node and the children start."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from search.loop import pool as pool_module
    from search.loop.config import config_from_dict

    class Tenant:  # another job's actor, holding one CPU while it lives
        def ready(self) -> bool:
            return True

    cluster, workers = cluster
    alive = [w.node_id for w in workers if w.node_id in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}]
    tenants = [ray.remote(num_cpus=1)(Tenant).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote() for node in alive]
    ray.get([t.ready.remote() for t in tenants])
    monkeypatch.setattr(pool_module, "PREPARE_TIMEOUT_S", 3.0)
    config = config_from_dict({"child": {"task": "mnist1d"},
                               "resources": {"address": cluster.address, "cpus_per_child": 1}})
    try:
        with pool_module.ChildPool(config) as pool:
            prepared = pool.prepare_nodes()
    finally:
        for t in tenants:
            ray.kill(t)
    assert sorted(p["node"] for p in prepared) == sorted(alive)
    assert all(p.get("error") == "not done in 3 s" for p in prepared)
