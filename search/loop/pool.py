"""The child pool: the only code that talks to Ray. The search driver and the significance re-training both use it.

A pool trains children on Ray workers: it connects (or starts an embedded Ray), knows how many children fit on the
cluster now (re-read every few seconds: nodes come and go), submits a child under a key of the caller's choosing,
polls for finished children, cancels children past their deadline, and holds back the first failures of a fresh
setup (probation): when the first ``PROBATION_CHILDREN`` children all fail with one error, the setup is broken, not the
candidates, and ``SystemicFailure`` stops the caller before it spends its budget on failures.

    with ChildPool(config, probation=True) as pool:          # connects; UserError when no child fits
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
import socket
import time
from dataclasses import dataclass
from typing import Hashable

import ray

from evaluator.user import metric_value
from search.language.errors import UserError
from search.loop.config import Config
from search.loop.store import CHILD_STATUSES

PROBATION_CHILDREN = 3  # the first children of a setup all failing with one error: a broken setup, not candidates
CAPACITY_REFRESH_S = 5.0  # how often the pool re-reads the cluster's resources
TIMEOUT_GRACE_S = 60.0


class SystemicFailure(Exception):
    """The first children of a setup all failed the same way: the setup is broken, not the candidates."""


@ray.remote
def _train_on_worker(settings, activation: str, seed: int, search_path: list[str] | None = None) -> dict:
    """One child on a Ray worker: ``train_child(settings, activation, seed)`` plus where it ran. Receives the expression
    text and the ``ChildSettings``, never a model; returns the JSON-safe result record. ``search_path``: the driver's
    folders (``Config.search_path``) where a user-defined child's relative file or module is looked for when the
    worker's own directory (a runtime environment's working_dir) does not have it."""
    from evaluator.train import train_child

    record = train_child(settings, activation, seed, search_path=search_path)
    record["node"] = ray.get_runtime_context().get_node_id()
    record["host"] = socket.gethostname()
    return record


def failure_record(status: str, error: str, activation: str, seed: int, split: str) -> dict:
    """A result record (the shape ``train_child`` returns) for a child that produced none itself: the system's fault
    (``train_child`` never raises, so a child without a record of its own was lost, cancelled or broken outside it)."""
    return {"status": status, "accuracy": None, "split": split, "train_loss": None, "steps": 0, "wall_s": None,
            "images_per_s": None, "device": None, "error": error, "activation": activation, "seed": seed,
            "fault": "system"}


def is_system_failure(record: dict) -> bool:
    """Whether a result record failed for reasons outside the candidate (see ``train_child``'s ``fault``)."""
    return record.get("status") != "ok" and record.get("fault") == "system"


def child_reward(record: dict, rewards) -> tuple[str, float, dict]:
    """A child's ``(status, reward, record)``: for "ok", the reward of its ``rewards.metric`` (the metric, or minus it
    when ``rewards.minimize``), else ``rewards.failed``. An "ok" record without that metric, or with a non-finite one,
    becomes "failed", the candidate's fault (the returned record says why). ``rewards``: a ``RewardSettings``, or a
    plain number (the failed reward, with the metric accuracy)."""
    if isinstance(rewards, (int, float)):
        from search.loop.config import RewardSettings

        rewards = RewardSettings(failed=float(rewards))
    status, value = record["status"], metric_value(record, rewards.metric)
    good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if status == "ok" and not good:
        why = (f"the child returned no metric {rewards.metric!r}" if value is None
               else f"the child's {rewards.metric} is {value}, not a finite number")
        status, record = "failed", {**record, "status": "failed", "error": why, "fault": "candidate"}
    return status, (rewards.reward_of(float(value)) if status == "ok" else rewards.failed), record


def child_timeout(config: Config) -> float | None:
    """Seconds after which the pool cancels a child: ``resources.child_timeout_s``, else derived from
    ``child.time_limit_s`` (twice it plus a grace period); None when neither is set."""
    limit = config.resources.child_timeout_s
    if not limit and config.child.time_limit_s:
        limit = 2 * config.child.time_limit_s + TIMEOUT_GRACE_S
    return limit or None


def child_result(ref: ray.ObjectRef, activation: str, seed: int, split: str, max_retries: int) -> dict:
    """The result record of a finished child task; never raises (see the module docstring)."""
    try:
        record = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # raised outside train_child (which never raises): the worker's setup
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        message = str(cause).strip().splitlines()
        return failure_record("failed", f"{type(cause).__name__}: {message[0] if message else ''}", activation,
                              seed, split)
    except ray.exceptions.RayError as exc:  # worker or node died more often than max_retries allows
        return failure_record("failed", f"system failure after {max_retries} retries: {type(exc).__name__}",
                              activation, seed, split)
    if not isinstance(record, dict) or record.get("status") not in CHILD_STATUSES:
        return failure_record("failed", f"malformed result record: {str(record)[:200]}", activation, seed, split)
    return record


def check_address(config: Config) -> None:
    """``UserError`` at once when nothing answers at ``resources.address`` (Ray itself retries for minutes)."""
    address = config.resources.address
    if address and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise UserError(f"resources.address: nothing answers at {address!r} "
                            f"({exc.strerror or exc}); is the Ray head running?") from None


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
    try:
        runtime_env = runtime_environment(config)
        if runtime_env:
            quiet["runtime_env"] = runtime_env
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=config.resources.num_cpus or None, include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "an embedded local Ray"
        raise UserError(f"resources.address: cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
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


class ChildPool:
    """Children in flight on Ray, keyed by the caller. Single-threaded; see the module docstring for an example.

    config: the run's config (``child`` settings, ``resources``). probation: hold back failures until a child of this
    setup succeeds (a fresh run or study); False once the setup has proven itself. noun: what messages call the
    children.
    """

    def __init__(self, config: Config, probation: bool, noun: str = "children"):
        self.config = config
        self.noun = noun  # what the children are called in messages ("re-trainings" for significance)
        self.probation = probation
        self.held: list[tuple[Hashable, dict]] = []  # failures held back while on probation
        self.timeout = child_timeout(config)
        self.search_path = config.search_path()
        self._flights: dict[ray.ObjectRef, _Flight] = {}
        self._capacity, self._capacity_at = 0, -math.inf
        self._started_ray = False

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
        return self

    def __exit__(self, *exc) -> None:
        self.cancel_all()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

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

    def has_room(self) -> bool:
        return len(self._flights) < self.capacity()

    def keys(self) -> list[Hashable]:
        """Keys of the children in flight."""
        return [f.key for f in self._flights.values()]

    # -- children

    def submit(self, key: Hashable, activation: str, seed: int, name: str = "child") -> None:
        """Start one child: ``config.child``'s settings, ``activation`` (expression text or baseline name) and
        ``seed``, reserving ``config.resources``' CPUs / GPUs."""
        r = self.config.resources
        ref = _train_on_worker.options(num_cpus=r.cpus_per_child, num_gpus=r.gpus_per_child,
                                       max_retries=r.max_retries, retry_exceptions=False,
                                       name=name).remote(self.config.child, activation, seed, self.search_path)
        deadline = time.monotonic() + self.timeout if self.timeout else None
        self._flights[ref] = _Flight(key, activation, seed, deadline)

    def poll(self, timeout: float) -> list[tuple[Hashable, dict]]:
        """Wait up to ``timeout`` s; return ``(key, record)`` of the children that finished or passed their deadline.

        Raises ``SystemicFailure`` when probation ends in the first children all failing one way.
        """
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
                finished.append((flight.key, failure_record(
                    "timeout", f"cancelled by the driver after {self.timeout:g} s", flight.activation, flight.seed,
                    split)))
        return self._probation(finished)

    def _probation(self, finished: list[tuple[Hashable, dict]]) -> list[tuple[Hashable, dict]]:
        out = []
        for key, record in finished:
            if not self.probation:
                out.append((key, record))
            elif record["status"] == "failed":
                self.held.append((key, record))
                if len(self.held) >= PROBATION_CHILDREN:
                    errors = {r.get("error") for _, r in self.held}
                    if len(errors) == 1:
                        raise SystemicFailure(f"the first {len(self.held)} {self.noun} all failed with: {errors.pop()}")
                    out += self.release_held()
            else:
                out += self.release_held()
                out.append((key, record))
        return out

    def release_held(self) -> list[tuple[Hashable, dict]]:
        """End probation and return the failures held back (fewer children than probation needs, or mixed errors:
        they were the candidates' own)."""
        self.probation = False
        held, self.held = self.held, []
        return held

    def cancel_all(self) -> list[Hashable]:
        """Cancel every child in flight (a stopped session); returns their keys. They rerun, same seed, next time."""
        keys = self.keys()
        for ref in self._flights:
            ray.cancel(ref, force=True)
        self._flights.clear()
        return keys
