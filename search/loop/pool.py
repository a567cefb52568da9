"""The child pool: the only code that talks to Ray; the engine's executor (``search.loop.executor``) for real runs.

A pool trains children on Ray workers: it connects (or starts an embedded Ray), knows how many children fit on the
cluster now (re-read every few seconds: nodes come and go), submits a child under a key of the caller's choosing,
polls for finished children and stops children past their deadline.

A child past its deadline (``child_timeout``) is stopped on its own worker: a ``SIGALRM`` timer set when it starts
interrupts it there, and it returns a "timeout" record. The driver force-cancels only a child that has not come back
``CANCEL_AFTER_S`` later (one stuck where no signal reaches it): Ray 2.60's driver can abort on a force-cancel that
races with the task's own end ("Tried to complete task that was not pending", ``task_manager.cc``).

    with ChildPool(config) as pool:                          # connects; UserError when no child fits
        pool.submit(key, "x * sigmoid(x)", seed)
        for key, record in pool.poll(0.25):                    # result records, as ``train_child`` returns them
            ...

A result record never raises out of ``poll``: a child whose worker or node died more often than
``resources.max_retries`` allows, or that broke outside ``train_child``, or that the pool cancelled at its deadline,
comes back as a "failed" / "timeout" record with ``fault: "system"`` (see ``evaluator.train.train_child``).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Hashable

import ray

from evaluator.result import ChildResult, one_line
from search.language.errors import UserError
from search.loop.config import Config
from search.loop.executor import Executor
from search.loop.fidelity import Reporter, RungBoard, RungDecision
from search.loop.progress import interrupt

CAPACITY_REFRESH_S = 5.0  # how often the pool re-reads the cluster's resources
TIMEOUT_GRACE_S = 60.0
PREPARE_TIMEOUT_S = 900.0  # how long a cluster's nodes may take to build the kernel before the children start anyway
LOST_CHECK_S = 3.0  # how long the driver waits for a cluster's head to answer after a child's system failure
HEAD_CHECK_EVERY_S = 5.0  # how often a session asks whether its cluster's head still answers (Ray ends a driver whose
# head is gone for 60 s, and meanwhile retries its children: no child's failure says so)
CANCEL_AFTER_S = 30.0  # past a child's deadline, how long the driver waits for its worker to stop it before cancelling


@ray.remote(num_cpus=0)
class _BoardActor:
    """Early stopping's ``RungBoard`` where every worker can reach it: a child's report waits for its decision."""

    def __init__(self, rungs, eta, metric, minimize, stop, ordered, decisions):
        self.board = RungBoard(rungs, eta, metric, minimize, stop, ordered)
        self.board.load(decisions)

    def decide(self, key, rung, step, value) -> bool | None:
        return self.board.decide(key, rung, step, value)

    def launched(self, key) -> None:
        self.board.launched(key)

    def ended(self, keys) -> None:
        for key in keys:
            self.board.ended(key)

    def drain(self) -> list[RungDecision]:
        return self.board.drain()


class _ActorDecide:
    """``Reporter``'s decision, asked of the board actor from a worker (picklable: it holds the actor's handle)."""

    def __init__(self, actor, key):
        self.actor, self.key = actor, key

    def __call__(self, rung: int, step: int, value: float) -> bool:
        return ray.get(self.actor.decide.remote(self.key, rung, step, value))


class _PastDeadline(BaseException):
    """Raised in a child's worker by its deadline's ``SIGALRM``; a ``BaseException``, so no ``except Exception`` in the
    training code (ours or a user's) takes it for the candidate's error."""


@ray.remote
def _train_on_worker(settings, activation: str, seed: int, search_path: list[str] | None = None,
                     report: Reporter | None = None, timeout_s: float | None = None) -> dict:
    """One child on a Ray worker: ``train_child(settings, activation, seed)`` plus where it ran. Receives the expression
    text and the ``ChildSettings``, never a model; returns the result's record (``ChildResult.to_dict``) and its
    traceback, if any. ``search_path``: the driver's folders (``Config.search_path``) where a user-defined child's
    relative file or module is looked for when the worker's own directory (a runtime environment's working_dir) does
    not have it."""
    from evaluator.train import prepare_kernel, train_child

    prepare_kernel(settings, activation)  # the native kernel's first build or load is not the child's time
    alarm = bool(timeout_s) and threading.current_thread() is threading.main_thread()
    if alarm:
        def past_deadline(signum, frame):
            raise _PastDeadline()

        previous = signal.signal(signal.SIGALRM, past_deadline)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        try:
            result = train_child(settings, activation, seed, search_path=search_path, report=report)
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _PastDeadline:
        result = lost_child("timeout", f"stopped on its worker after {timeout_s:g} s", activation, seed, settings.split)
    finally:
        if alarm:
            signal.signal(signal.SIGALRM, previous)
    result.extra.update(node=ray.get_runtime_context().get_node_id(), host=socket.gethostname())
    return {**result.to_dict(), "traceback": result.traceback}


@ray.remote(max_retries=0)
def _prepare_on_node(settings) -> dict:
    """Build or load the children's activation kernel on the node this task is pinned to (``ChildPool.prepare_nodes``);
    returns the node and the kernel."""
    from evaluator.activations import SWISH
    from evaluator.train import prepare_kernel

    return {"node": ray.get_runtime_context().get_node_id(), "kernel": prepare_kernel(settings, SWISH)}


def builds_kernel(config: Config) -> bool:
    """Whether the children build an activation kernel (the native one compiles once per machine, about 40 s): not a
    replayed table or the synthetic task, which train no network."""
    return config.child.task not in ("table", "synthetic")


def lost_child(status: str, error: str, activation: str, seed: int, split: str) -> ChildResult:
    """The result of a child that produced none itself: the system's fault (``train_child`` never raises, so a child
    without a result of its own was lost, cancelled or broken outside it)."""
    return getattr(ChildResult, status)(activation, seed, error=error, fault="system", split=split, wall_s=None)


def child_timeout(config: Config) -> float | None:
    """Seconds after which the pool cancels a child: ``resources.child_timeout_s``, else derived from
    ``child.time_limit_s`` (twice it plus a grace period); None when neither is set."""
    limit = config.resources.child_timeout_s
    if not limit and config.child.time_limit_s:
        limit = 2 * config.child.time_limit_s + TIMEOUT_GRACE_S
    return limit or None


def child_result(ref: ray.ObjectRef, activation: str, seed: int, split: str, max_retries: int) -> ChildResult:
    """The result of a finished child task; never raises (see the module docstring)."""
    try:
        record = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # raised outside train_child (which never raises): the worker's setup
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return lost_child("failed", one_line(cause), activation, seed, split)
    except ray.exceptions.RayError as exc:  # worker or node died more often than max_retries allows
        lost = lost_child("failed", f"system failure after {max_retries} retries: {type(exc).__name__}",
                          activation, seed, split)
        lost.extra["ray_error"] = type(exc).__name__  # ChildPool.lost reads it
        return lost
    return ChildResult.from_dict(record)


def unanswered(address: str, timeout: float) -> str | None:
    """Why nothing accepts a connection at ``address`` (``host:port``, ``ray://`` allowed) within ``timeout`` s, or
    None when something does: a Ray head there, or not, but a listening one."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def check_address(config: Config) -> None:
    """``UserError`` at once when nothing answers at ``resources.address`` (Ray itself retries for minutes), or, for a
    Ray of this command's own, when this machine lacks the cores, GPUs or dataset files a child needs."""
    address = config.resources.address
    if address == "auto":  # the cluster `ray start` left on this machine (or RAY_ADDRESS), as Ray looks for it, but
        try:                 # not Ray's last resort: any Ray process found on the machine (another command's own)
            from ray._private.services import canonicalize_bootstrap_address
            from ray._private.utils import read_ray_address

            given = os.environ.get("RAY_ADDRESS", "").strip()
            found = given if given and given != "auto" else read_ray_address()
            if not found:
                raise ConnectionError("no cluster file")
            address = canonicalize_bootstrap_address(found) or ""
        except ConnectionError:
            raise UserError("resources.address: auto finds no Ray cluster on this machine; start one with "
                            "`ray start --head`, or leave address empty for a Ray of this command's own") from None
        except Exception:  # noqa: BLE001  a Ray without those helpers: connecting will say what is wrong
            return
    why = unanswered(address, 5.0) if address else None
    if why:
        auto = " (auto: the cluster `ray start` last left on this machine)" if config.resources.address == "auto" else ""
        raise UserError(f"resources.address: nothing answers at {address!r}{auto} ({why}); is the Ray head running?")
    r = config.resources
    if not address and not ray.is_initialized():  # an embedded Ray has this machine's cores and GPUs: check them now,
        cpus = r.num_cpus or os.cpu_count() or 1   # not after Ray has started and the run folder exists
        gpus = 0
        if r.gpus_per_child > 0:
            import torch

            gpus = torch.cuda.device_count()
        if r.cpus_per_child > cpus or r.gpus_per_child > gpus:
            raise UserError(f"resources: a child needs {r.cpus_per_child:g} CPU and {r.gpus_per_child:g} GPU, "
                            f"this machine's Ray would have {cpus:g} CPU and {gpus:g} GPU")
        from evaluator.data import missing_data

        missing = missing_data(config.child)  # this machine's workers would read it (a cluster's have their own disks)
        if missing:
            raise UserError(f"child.task {config.child.task}: {missing}")


def runtime_environment(config: Config) -> dict:
    """Ray's runtime environment for the children: ``resources.working_dir`` (uploaded to every worker, which runs in
    it and imports from it: a user-defined child's code reaching a cluster) and ``resources.py_modules``."""
    env: dict = {}
    r = config.resources
    if r.working_dir:
        env["working_dir"] = r.working_dir
    if r.py_modules:
        env["py_modules"] = list(r.py_modules)
    return env


def connect_ray(config: Config) -> bool:
    """Connect to (or start) Ray as ``resources.address`` says; returns True when this call connected.

    A process that already called ``ray.init`` (a test, a notebook) is reused as it is.
    """
    if ray.is_initialized():
        return False
    address = config.resources.address
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    check_address(config)
    ours = signal.getsignal(signal.SIGTERM) is interrupt  # a command's (term_as_interrupt): ray.init replaces it
    try:
        runtime_env = runtime_environment(config)
        if runtime_env:
            quiet["runtime_env"] = runtime_env
        if address:
            ray.init(address=address, **quiet)
        else:
            # "local": a Ray of its own, also where `ray start` (or another program's cluster) left its address in
            # /tmp/ray: ray.init() without one would join that cluster (and refuse num_cpus)
            ray.init(address="local", num_cpus=config.resources.num_cpus or None, include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "an embedded local Ray"
        raise UserError(f"resources.address: cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
    except SystemExit as exc:  # a SIGTERM while ray.init runs: its own handler (installed first thing) exits
        if ours and exc.code == signal.SIGTERM:
            raise KeyboardInterrupt from None
        raise
    if ours and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
    return True


def cluster_capacity(config: Config) -> tuple[int, dict]:
    """How many children fit on the cluster at once, and its total resources."""
    total = ray.cluster_resources()
    r = config.resources
    fits = []
    if r.cpus_per_child > 0:
        fits.append(int(total.get("CPU", 0) / r.cpus_per_child + 1e-9))
    if r.gpus_per_child > 0:
        fits.append(int(total.get("GPU", 0) / r.gpus_per_child + 1e-9))
    capacity = min(fits) if fits else r.max_in_flight
    if r.max_in_flight:
        capacity = min(capacity, r.max_in_flight)
    return capacity, total


@dataclass
class _Flight:
    key: Hashable
    activation: str
    seed: int
    deadline: float | None


class ChildPool(Executor):
    """Children in flight on Ray, keyed by the caller: the engine's executor for real searches (the other is
    ``search.loop.executor.LocalExecutor``). Single-threaded; see the module docstring for an example."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.timeout = child_timeout(config)
        self.search_path = config.search_path()
        self._flights: dict[ray.ObjectRef, _Flight] = {}
        self._capacity, self._capacity_at = 0, -math.inf
        self._started_ray = False
        self._head, self._gone = None, False  # the cluster head's address (None: embedded); whether it went away
        self._head_checked = time.monotonic()

    # -- connection

    def __enter__(self) -> "ChildPool":
        self._started_ray = connect_ray(self.config)
        try:
            capacity, total = cluster_capacity(self.config)
            if capacity < 1:
                r = self.config.resources
                raise UserError(f"resources: a child needs {r.cpus_per_child:g} CPU and {r.gpus_per_child:g} GPU, "
                                f"the Ray cluster has {total.get('CPU', 0):g} CPU and {total.get('GPU', 0):g} GPU")
        except BaseException:
            self.__exit__()
            raise
        self.cluster = {"nodes": len([n for n in ray.nodes() if n.get("Alive")]), "CPU": total.get("CPU", 0),
                        "GPU": total.get("GPU", 0), "children_at_once": capacity}
        self._head = ray.get_runtime_context().gcs_address if self.config.resources.address else None
        return self

    def __exit__(self, *exc) -> None:
        self.cancel_all()
        if self._gone:  # nothing answers: ray.shutdown would wait a minute for the head, then end this process
            return
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def lost(self, result: ChildResult) -> str | None:
        """After ``result``, a system failure: a line when the children's Ray went away (this machine's Ray node
        died, which no child survives, or a cluster's head, ``resources.address``, stopped answering), else None (a
        worker or another node died: Ray retried it, and the engine queues it again)."""
        where = f"the Ray cluster at {self.config.resources.address}" if self._head else "the Ray of this command"
        if result.extra.get("ray_error") == "LocalRayletDiedError":
            self._gone = True
            return f"{where} stopped (this machine's Ray node died)"
        return self._head_gone() if self._head else None

    def lost_now(self) -> str | None:
        """On a cluster, every ``HEAD_CHECK_EVERY_S``: a line when its head stopped answering, else None."""
        if not self._head or self._gone or time.monotonic() - self._head_checked < HEAD_CHECK_EVERY_S:
            return None
        self._head_checked = time.monotonic()
        return self._head_gone()

    def _head_gone(self) -> str | None:
        """A line when the cluster's head does not answer (the session is then over: ``_gone``), else None."""
        why = unanswered(self._head, LOST_CHECK_S)
        if why:
            self._gone = True
            return f"the Ray cluster at {self.config.resources.address} stopped answering ({why})"
        return None

    def prepare_nodes(self) -> list[dict]:
        """On a cluster (``resources.address``), build or load the children's activation kernel on every node a child
        fits on, one task pinned to each, before any child starts: built by a node's first child instead, it would
        count against that child's deadline (``child_timeout``, 330 s for the quickstart's settings) and a slow node
        would lose the child as a "timeout". Returns one ``{"node", "kernel"}`` per node (``"error"``
        instead for a node that died, failed, or did not finish within ``PREPARE_TIMEOUT_S``: no room for the task, as
        where another job holds its CPUs); nothing for an embedded Ray (the session builds it in the driver, on the
        same machine) or children that build nothing. A node that joins later builds in its first child."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        r = self.config.resources
        if not r.address or not builds_kernel(self.config):
            return []
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= r.cpus_per_child
                 and n["Resources"].get("GPU", 0) >= r.gpus_per_child]
        refs = {node: _prepare_on_node.options(
            num_cpus=r.cpus_per_child, num_gpus=r.gpus_per_child,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(self.config.child)
            for node in nodes}
        out, deadline = [], time.monotonic() + PREPARE_TIMEOUT_S
        for node, ref in refs.items():
            try:
                out.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except ray.exceptions.GetTimeoutError:  # no room on the node (another job's tasks), or a stuck build
                ray.cancel(ref, force=False)
                out.append({"node": node, "error": f"not done in {PREPARE_TIMEOUT_S:g} s"})
            except (ray.exceptions.RayError, OSError) as exc:  # the node died, or its worker broke
                out.append({"node": node, "error": one_line(exc)})
        return out

    # -- state

    def capacity(self) -> int:
        """How many children fit on the cluster now (re-read at most every ``CAPACITY_REFRESH_S``)."""
        now = time.monotonic()
        if now - self._capacity_at >= CAPACITY_REFRESH_S:
            self._capacity, self._capacity_at = max(cluster_capacity(self.config)[0], 1), now
        return self._capacity

    def __len__(self) -> int:
        """Children in flight."""
        return len(self._flights)

    def keys(self) -> list[Hashable]:
        """Keys of the children in flight."""
        return [f.key for f in self._flights.values()]

    # -- children

    def submit(self, key: Hashable, activation: str, seed: int, name: str = "child") -> None:
        """Start one child: ``config.child``'s settings, ``activation`` (expression text or baseline name) and
        ``seed``, reserving ``config.resources``' CPUs / GPUs."""
        r = self.config.resources
        if self.board is not None:  # known to the board before the child can report (the workers call it too)
            ray.get(self._actor.launched.remote(key))
        ref = _train_on_worker.options(num_cpus=r.cpus_per_child, num_gpus=r.gpus_per_child,
                                       max_retries=r.max_retries, retry_exceptions=False,
                                       name=name).remote(self.config.child, activation, seed, self.search_path,
                                                         self._reporter(key), self.timeout)
        deadline = time.monotonic() + self.timeout + CANCEL_AFTER_S if self.timeout else None
        self._flights[ref] = _Flight(key, activation, seed, deadline)

    def attach(self, board: RungBoard) -> None:
        """Children report to a board actor that starts from ``board``'s decisions; ``drain_rungs`` hands its new
        decisions back (and keeps ``board`` up to date)."""
        super().attach(board)
        self._actor = _BoardActor.remote(board.rungs, board.eta, board.metric, board.minimize, board.stop,
                                         board.ordered, list(board.known.values()))

    def drain_rungs(self) -> list[RungDecision]:
        if self.board is None:
            return []
        new = ray.get(self._actor.drain.remote())
        self.board.load(new)
        return new

    def _reporter(self, key: Hashable) -> Reporter | None:
        if self.board is None:
            return None
        return Reporter(self.board.rungs, self.board.metric, _ActorDecide(self._actor, key))

    def poll(self, timeout: float) -> list[tuple[Hashable, ChildResult]]:
        """Wait up to ``timeout`` s; return ``(key, result)`` of the children that finished or passed their
        deadline."""
        if not self._flights:
            time.sleep(timeout)
            return []
        done, _ = ray.wait(list(self._flights), num_returns=1, timeout=timeout)
        if done:
            done, _ = ray.wait(list(self._flights), num_returns=len(self._flights), timeout=0)
        split, retries = self.config.child.split, self.config.resources.max_retries
        finished = []
        for ref in done:
            flight = self._flights.pop(ref)
            finished.append((flight.key, child_result(ref, flight.activation, flight.seed, split, retries)))
        now = time.monotonic()
        for ref, flight in list(self._flights.items()):
            if flight.deadline is not None and now > flight.deadline:
                ray.cancel(ref, force=True)
                del self._flights[ref]
                finished.append((flight.key, lost_child(
                    "timeout", f"cancelled by the driver after {self.timeout + CANCEL_AFTER_S:g} s (its worker did "
                    f"not stop it after {self.timeout:g} s)", flight.activation, flight.seed, split)))
        if self.board is not None and finished:
            self._actor.ended.remote([key for key, _ in finished])
        return finished

    def cancel_all(self) -> list[Hashable]:
        """Cancel every child in flight (a stopped session); returns their keys. They rerun, same seed, next time."""
        keys = self.keys()
        if self._gone:  # nothing answers: a Ray call would wait a minute for the head, then end this process
            self._flights.clear()
            return keys
        refs = list(self._flights)
        # The children still running are asked to stop (an interrupt in the worker), not force-cancelled: a
        # force-cancel that races with the task's own end aborts Ray 2.60's driver ("Tried to complete task that was
        # not pending", see CANCEL_AFTER_S), and CI lost a test process to it.
        if refs:
            _, running = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in running:
                ray.cancel(ref, force=False)
        self._flights.clear()
        if self.board is not None and keys:
            self._actor.ended.remote(keys)
        return keys
