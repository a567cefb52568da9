"""The search loop: a controller proposes candidates, Ray workers train children, the run store records everything.

One candidate's life: the proposer's ``ask`` returns a ``Proposal`` (token string) -> the driver decodes it and asks the
``RewardBook``: a screened or already-evaluated function gets its reward at once; a function being trained right now
waits for that child; a new one is queued -> when a worker slot is free, a Ray task trains the child
(``evaluator.train.train_child``) from the expression *text*, the child settings and a seed derived from the run seed
and the candidate's index -> the result record comes back, its reward is written to the store and told to the
proposer -> when the proposer's learner updates, the update is recorded and the proposer's whole state is
checkpointed atomically.

Exactly once, across any crash. The store journals every ``ask`` call and every reward delivery (``tell``) in the
order they happened; the checkpoint names the last journal event it includes. A resumed driver loads the checkpoint
and replays the journal after it (the proposer is deterministic, so a replayed ``ask`` returns the very proposals
the store holds, which is checked), so each reward reaches the controller once. A result is written in the same
transaction as its ``tell`` event, so a result is either recorded and delivered, or neither. Children that were
running when the driver died have no result: they are dispatched again, with the same seed.

Run directory (``results/<name>/``)::

    config.yaml            the resolved config (every default filled in)
    store.sqlite           the run store (search.store): proposals, results, journal, updates, sessions
    checkpoints/controller.pt   the proposer's state after its latest update (atomic: tmp + fsync + rename)
    provenance.json        package version, git commit, torch / ray / python versions, devices, per session
    run.log                one line per result, update and session, plus periodic progress
"""
from __future__ import annotations

import collections
import io
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np
import ray
import torch

from controller import Proposal, make_proposer
from search.cli import UserError
from search.config import RESUMABLE_SECTIONS, Config, load_config
from search.rewards import RewardBook
from search.store import CHILD_STATUSES, Store, StoreError

CONFIG_FILE = "config.yaml"
STORE_FILE = "store.sqlite"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "controller.pt"
PROVENANCE_FILE = "provenance.json"
LOG_FILE = "run.log"
LOCK_FILE = "run.lock"

CHECKPOINT_EVERY_EVENTS = 500  # also checkpoint proposers that never update, so a resume replays little
PROBATION_CHILDREN = 3  # the run stops if its first children all fail with one error (a broken setup, not candidates)
CAPACITY_REFRESH_S = 5.0  # how often the driver re-reads the cluster's resources (nodes come and go)
TIMEOUT_GRACE_S = 60.0


def derive_seed(*keys: int) -> int:
    """A 31-bit seed from non-negative integer ``keys`` (numpy's ``SeedSequence``): the same keys give the same seed,
    different keys independent ones."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


def child_seed(run_seed: int, index: int) -> int:
    """The seed of candidate ``index``'s child: a function of the run seed and the index only, so a resumed run
    trains exactly what an uninterrupted one would have."""
    return derive_seed(run_seed, index)


# ---------------------------------------------------------------- fault injection (tests only)

class _Faults:
    """``ACTSEARCH_TEST_KILL_AT=point:n[,point:n]``: the driver SIGKILLs itself the n-th time it reaches ``point``.

    Inert unless the variable is set. Points: ask (proposals in memory, not recorded), asked (recorded, not yet
    judged), dispatch (a child submitted), result (a result arrived, not recorded), told (recorded, not yet told to
    the proposer), update (update recorded, no checkpoint yet), checkpoint (half of the checkpoint's temporary file
    written).
    """

    def __init__(self, spec: str):
        self.targets: dict[str, int] = {}
        self.hits: collections.Counter = collections.Counter()
        for part in filter(None, (p.strip() for p in spec.split(","))):
            point, _, n = part.partition(":")
            self.targets[point] = int(n or 1)

    def armed(self, point: str) -> bool:
        return self.targets.get(point) == self.hits[point] + 1

    def hit(self, point: str) -> None:
        if point in self.targets:
            self.hits[point] += 1
            if self.hits[point] == self.targets[point]:
                os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------- checkpoints

def write_checkpoint(path: Path, payload: dict, faults: _Faults | None = None) -> None:
    """``torch.save(payload)`` to ``path`` atomically: a temporary file, fsync, rename, fsync of the directory."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        half = len(data) // 2
        f.write(data[:half])
        if faults is not None:
            if faults.armed("checkpoint"):  # make the torn half-file real on disk before dying
                f.flush()
                os.fsync(f.fileno())
            faults.hit("checkpoint")
        f.write(data[half:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none; a leftover temporary file is removed."""
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:  # an atomic write cannot leave a torn file; this is damage from outside
        raise StoreError(f"cannot read the controller checkpoint {path}: {exc}") from None


# ---------------------------------------------------------------- the child task (runs on a worker)

@ray.remote
def run_child(settings, activation: str, seed: int, test_delay_s: float = 0.0) -> dict:
    """Train one child on a Ray worker: ``train_child(settings, activation, seed)`` plus where it ran.

    Receives the expression text and the ``ChildSettings``, never a model; returns the JSON-safe result record.
    """
    if test_delay_s:
        time.sleep(test_delay_s)  # tests: keep children in flight long enough to kill things under them
    from evaluator.train import train_child

    record = train_child(settings, activation, seed)
    record["node"] = ray.get_runtime_context().get_node_id()
    record["host"] = socket.gethostname()
    return record


def submit_child(config: Config, activation: str, seed: int, name: str, test_delay_s: float = 0.0) -> ray.ObjectRef:
    """Start one child on the cluster: ``config.child``'s settings, ``activation`` (expression text or baseline name)
    and ``seed``, reserving ``config.resources``' CPUs / GPUs per child. Returns the task's ref (see ``child_result``).
    """
    r = config.resources
    return run_child.options(num_cpus=r.cpus_per_child, num_gpus=r.gpus_per_child, max_retries=r.max_retries,
                             retry_exceptions=False, name=name).remote(config.child, activation, seed, test_delay_s)


def child_timeout(config: Config) -> float | None:
    """Seconds after which the driver cancels a child: ``resources.child_timeout_s``, else derived from
    ``child.time_limit_s`` (twice it plus a grace period); None when neither is set."""
    limit = config.resources.child_timeout_s
    if not limit and config.child.time_limit_s:
        limit = 2 * config.child.time_limit_s + TIMEOUT_GRACE_S
    return limit or None


def child_reward(record: dict, failed_reward: float) -> tuple[str, float, dict]:
    """A child's ``(status, reward, record)``: the accuracy for "ok", ``failed_reward`` otherwise. An "ok" record
    without a finite accuracy becomes "failed" (the returned record says why)."""
    status, accuracy = record["status"], record.get("accuracy")
    good = isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool) and math.isfinite(accuracy)
    if status == "ok" and not good:
        status, record = "failed", {**record, "status": "failed", "error": "no finite accuracy in the result"}
    return status, (float(accuracy) if status == "ok" else failed_reward), record


def _failure_record(status: str, error: str, activation: str, seed: int, split: str) -> dict:
    """A result record (the shape ``train_child`` returns) for a child that produced none itself: the system's fault
    (``train_child`` never raises, so a child without a record of its own was lost, cancelled or broken outside it)."""
    return {"status": status, "accuracy": None, "split": split, "train_loss": None, "steps": 0, "wall_s": None,
            "images_per_s": None, "device": None, "error": error, "activation": activation, "seed": seed,
            "fault": "system"}


def is_system_failure(record: dict) -> bool:
    """Whether a result record failed for reasons outside the candidate (see ``train_child``'s ``fault``)."""
    return record.get("status") != "ok" and record.get("fault") == "system"


def child_result(ref: ray.ObjectRef, activation: str, seed: int, split: str, max_retries: int) -> dict:
    """The result record of a finished child task; never raises.

    An exception inside the child, a worker or node that died more often than ``max_retries``, or a malformed record
    gives a "failed" record whose ``error`` says which.
    """
    try:
        record = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # raised outside train_child (which never raises): the worker's setup
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        message = str(cause).strip().splitlines()
        return _failure_record("failed", f"{type(cause).__name__}: {message[0] if message else ''}", activation,
                               seed, split)
    except ray.exceptions.RayError as exc:  # worker or node died more often than max_retries allows
        return _failure_record("failed", f"system failure after {max_retries} retries: {type(exc).__name__}",
                               activation, seed, split)
    if not isinstance(record, dict) or record.get("status") not in CHILD_STATUSES:
        return _failure_record("failed", f"malformed result record: {str(record)[:200]}", activation, seed, split)
    return record


# ---------------------------------------------------------------- run directory

def create_run(run_dir: Path, config: Config) -> None:
    """Create ``run_dir`` with the resolved config, an empty store and the checkpoint folder, atomically.

    Raises ``FileExistsError`` when ``run_dir`` exists.
    """
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise FileExistsError(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.with_name(f".{run_dir.name}.creating-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        (tmp / CONFIG_FILE).write_text(config.to_yaml())
        (tmp / CHECKPOINT_DIR).mkdir()
        with Store.open(tmp / STORE_FILE, create=True) as store:
            store.set_meta("name", run_dir.name)
        os.rename(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block: one driving process per run (a search or a significance test).

    Raises ``UserError`` at once when another process holds it.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(run_dir) / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run_dir} is being run by another process right now") from None
    try:
        yield
    finally:
        lock.release()


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / STORE_FILE).is_file()


def update_run_config(run_dir: Path, config: Config) -> list[tuple[str, object, object]]:
    """Replace the run's budget / resources settings with ``config``'s (the search itself may not change).

    Returns the changed ``(field, old, new)``; raises ``UserError`` naming the first field outside those sections
    that differs from the run's.
    """
    stored = load_config(Path(run_dir) / CONFIG_FILE)
    fixed = ["seed"] + [s for s in ("space", "controller", "child", "rewards")]
    diffs = stored.section_differences(config, fixed)
    if diffs:
        name, old, new = diffs[0]
        raise UserError(f"{name}: the run {run_dir} has {old!r}, this config has {new!r}; a resumed run can change "
                        f"only {' and '.join(RESUMABLE_SECTIONS)} settings (start a new run with another --name)")
    changed = stored.section_differences(config, RESUMABLE_SECTIONS)
    if changed:
        _atomic_write(Path(run_dir) / CONFIG_FILE, config.to_yaml())
    return changed


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- provenance

def _git_commit() -> tuple[str | None, bool | None]:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def provenance_now() -> dict:
    """What produced this session's results: versions, git commit, host, the driver's devices."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("actsearch")
    except PackageNotFoundError:
        package = None
    commit, dirty = _git_commit()
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"actsearch": package, "git_commit": commit, "git_dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "ray": ray.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "host": socket.gethostname(), "driver_cuda_devices": cuda}


def _write_provenance(run_dir: Path, session: dict) -> None:
    path = Path(run_dir) / PROVENANCE_FILE
    data = json.loads(path.read_text()) if path.exists() else {"sessions": []}
    sessions = [s for s in data.get("sessions", []) if s.get("session") != session.get("session")] + [session]
    data = {**{k: v for k, v in session.items() if k not in ("session", "started_at", "ended_at", "outcome")},
            "sessions": sessions}
    _atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- Ray

def connect_ray(config: Config) -> bool:
    """Connect to (or start) Ray as ``resources.address`` says; returns True when this call connected.

    A process that already called ``ray.init`` (a test, a notebook) is reused as it is.
    """
    if ray.is_initialized():
        return False
    address = config.resources.address
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:  # Ray retries an unreachable address for minutes; say so at once instead
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise UserError(f"resources.address: nothing answers at {address!r} "
                            f"({exc.strerror or exc}); is the Ray head running?") from None
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=config.resources.num_cpus or None, include_dashboard=False, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "an embedded local Ray"
        raise UserError(f"resources.address: cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
    return True


class CapacityCache:
    """How many children fit on the cluster now, re-read at most every ``CAPACITY_REFRESH_S`` (nodes come and go)."""

    def __init__(self, config: Config):
        self.config = config
        self._value, self._at = 0, -math.inf

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._at >= CAPACITY_REFRESH_S:
            self._value, self._at = max(cluster_capacity(self.config)[0], 1), now
        return self._value


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


# ---------------------------------------------------------------- Ctrl-C

class StopSignal:
    """First SIGINT / SIGTERM: ask the loop to stop gracefully. Second: stop at once (KeyboardInterrupt)."""

    def __init__(self, say):
        self.requested = False
        self._say = say
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._say("stopping: recording what has arrived, then exiting; press Ctrl-C again to stop at once")


# ---------------------------------------------------------------- progress

class Progress:
    """A live status line on a terminal; plain periodic lines (and the same lines in run.log) otherwise."""

    def __init__(self, out: TextIO, log: TextIO, every_s: float):
        self.out, self.log, self.every_s = out, log, every_s
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._last_print = 0.0
        self._last_log = time.monotonic()
        self._live = False

    def event(self, text: str, show: bool = True) -> None:
        """A line for the log (and the console when ``show``)."""
        self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        self.log.flush()
        if show:
            self._clear()
            print(text, file=self.out, flush=True)

    def status(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_log >= max(self.every_s, 30.0) or force:
            self.log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            self.log.flush()
            self._last_log = now
        if self.tty:
            if force or now - self._last_print >= 0.5:
                width = shutil.get_terminal_size((120, 20)).columns - 1
                self.out.write("\r\x1b[K" + text[:width])
                self.out.flush()
                self._live = True
                self._last_print = now
        elif force or now - self._last_print >= self.every_s:
            print(text, file=self.out, flush=True)
            self._last_print = now

    def _clear(self) -> None:
        if self._live:
            self.out.write("\r\x1b[K")
            self._live = False

    def close(self) -> None:
        self._clear()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


# ---------------------------------------------------------------- the driver

@dataclass
class _Flight:
    index: int
    fingerprint: str
    submitted: float
    deadline: float | None


@dataclass
class RunResult:
    """How a session ended. outcome: finished (budget spent) | exhausted (the proposer has nothing more) |
    proposal-limit (budget.max_proposals reached) | complete (nothing was left to do) | interrupted."""

    outcome: str
    evaluated: int
    budget: int
    proposals: int
    updates: int
    best: dict | None
    driver_cpu_ms_per_candidate: float | None = None
    counts: dict = field(default_factory=dict)


class SystemicFailure(Exception):
    """The first children of a run all failed the same way: the setup is broken, not the candidates."""


class Driver:
    """The search loop of one session on one run directory. Single-threaded; the only writer of the store."""

    def __init__(self, run_dir: Path, config: Config, store: Store, progress: Progress, faults: _Faults):
        self.run_dir, self.config, self.store, self.progress, self.faults = run_dir, config, store, progress, faults
        self.space = config.space.build()
        self.proposer = make_proposer(config.controller, self.space, config.seed)
        self.book = RewardBook(config.rewards.screened, config.rewards.reject_linear)
        self.checkpoint_path = run_dir / CHECKPOINT_DIR / CHECKPOINT_FILE
        self.budget = config.budget.children
        self.proposal_limit = config.budget.proposal_limit

        self.open: dict[int, Proposal] = {}  # asked, reward not yet told
        self.texts: dict[int, str] = {}
        self.fps: dict[int, str] = {}
        self.ready: collections.deque[int] = collections.deque()  # judged new, waiting for a worker slot
        self.waiting: dict[str, list[int]] = {}  # fingerprint -> candidates waiting for the child of that function
        self.active: dict[str, int] = {}  # fingerprint -> the candidate whose child is queued or running
        self.first_child: dict[str, int] = {}  # fingerprint -> the candidate whose child gave the function's reward
        self.inflight: dict[ray.ObjectRef, _Flight] = {}
        self.held: list[tuple[_Flight, dict]] = []  # failures held back while the setup is on probation
        self.system_failures: collections.Counter[int] = collections.Counter()  # candidate -> re-queues this session

        self.evaluated = store.evaluated()
        self.proposed = store.proposals()
        self.last_seq = 0  # journal events the proposer has seen
        self.checkpoint_seq = 0
        self.ask_blocked = False  # the proposer returned nothing; ask again after the next tell
        self.session_children = 0
        self.started = time.monotonic()
        self.best = store.best()
        self.probation = not any(store.counts()[s] for s in ("ok", "diverged", "timeout"))
        self.capacity = CapacityCache(config)
        self._test_delay = float(os.environ.get("ACTSEARCH_TEST_CHILD_DELAY_S", "0") or 0)
        self.child_timeout = child_timeout(config)

    # ------------------------------------------------------------ restoring state

    def restore(self) -> int:
        """Load the checkpoint, replay the journal after it, rebuild the reward book and re-judge open candidates.

        Returns the number of journal events replayed. Raises ``StoreError`` if the proposer does not repeat itself.
        """
        checkpoint = read_checkpoint(self.checkpoint_path)
        if checkpoint is not None:
            self.proposer.load_state_dict(checkpoint["proposer"])
            self.last_seq = self.checkpoint_seq = int(checkpoint["event_seq"])
            if self.last_seq > self.store.last_event_seq():
                raise StoreError(f"{self.checkpoint_path} is ahead of the store (event {self.last_seq})")
        events = self.store.events_after(self.last_seq)
        for event in events:
            self._replay(event)
        for fingerprint, (reward, index) in self.store.rewards_by_fingerprint().items():
            self.book.record(fingerprint, reward)
            self.first_child[fingerprint] = index
        rows = self.store.open_candidates()
        for row in rows:
            self.open.setdefault(row["index"], Proposal.from_dict(row["proposal"]))
            self.texts[row["index"]], self.fps[row["index"]] = row["text"], row["fingerprint"]
        if sorted(self.open) != self.proposer.outstanding:
            raise StoreError(f"the controller's outstanding proposals {self.proposer.outstanding[:10]} differ from "
                             f"the store's open candidates {sorted(self.open)[:10]}")
        if self.proposer.version != self.store.update_count():
            raise StoreError(f"the controller has made {self.proposer.version} updates, the store records "
                             f"{self.store.update_count()}")
        for row in rows:
            self._route(row["index"], self.book.judge(self.space.decode(row["tokens"])))
        return len(events)

    def _replay(self, event: dict) -> None:
        if event["kind"] == "ask":
            proposals = self.proposer.ask(event["n"])
            stored = self.store.candidates(first=event["first_index"] or 0, limit=event["count"]) \
                if event["count"] else []
            got = [(p.index, tuple(p.tokens)) for p in proposals]
            want = [(c["index"], c["tokens"]) for c in stored]
            if got != want:
                raise StoreError(f"replaying journal event {event['seq']}: the controller proposed {got[:3]}, the "
                                 f"store holds {want[:3]}; the controller is not deterministic")
            for p in proposals:
                self.open[p.index] = p
        else:
            row = self.store.candidate(event["candidate"])
            proposal = self.open.pop(row["index"], None) or Proposal.from_dict(row["proposal"])
            update = self.proposer.tell(proposal, row["reward"])
            self.last_seq = event["seq"]
            if update:
                self._record_update(update)
        self.last_seq = event["seq"]

    # ------------------------------------------------------------ state of the run

    def remaining_work(self) -> bool:
        """Whether a session has anything to do (False for a finished run: resuming it is a no-op)."""
        if self.evaluated >= self.budget:
            return False
        if self.open:
            return True
        return not self.proposer.finished and self.proposed < self.proposal_limit

    def _committed(self) -> int:
        """Children spent or promised: trained, running, queued, or held back on probation."""
        return self.evaluated + len(self.inflight) + len(self.ready) + len(self.held)

    # ------------------------------------------------------------ the loop

    def loop(self, stop: StopSignal) -> str:
        """Run until the budget is spent, the proposer is done, or a stop is requested; returns the outcome."""
        while not stop.requested:
            self._launch_ready()
            if self.evaluated >= self.budget and not self.inflight:
                return "finished"
            if self._ask():
                continue
            if not self.inflight:
                if self.held:  # fewer children than probation needs: they were the candidates' own failures
                    self._release_held()
                    continue
                if not self.ready:
                    if self.proposer.finished:
                        return "exhausted"
                    if self.proposed >= self.proposal_limit:
                        return "proposal-limit"
                    raise RuntimeError("the controller proposes nothing while no child is in flight")
            self._collect(0.25)
            self._enforce_timeouts()
            self._maybe_checkpoint()
            self.progress.status(self.status_line())
        return "interrupted"

    def _ask(self) -> bool:
        """Ask the proposer for as many candidates as there are free slots and budget; True if it proposed any."""
        room = min(self.capacity() - len(self.inflight) - len(self.ready),
                   self.budget - self._committed(), self.proposal_limit - self.proposed)
        if room <= 0 or self.ask_blocked or self.proposer.finished:
            return False
        proposals = self.proposer.ask(room)
        self.faults.hit("ask")
        judged = []
        for p in proposals:
            expr = self.space.decode(p.tokens)
            judgement = self.book.judge(expr)
            if judgement.status == "new":  # so a twin later in this batch waits instead of training again
                self.book.start(judgement.fingerprint)
                self.active[judgement.fingerprint] = p.index
            judged.append((p, expr, judgement))
        self.last_seq = self.store.record_ask(room, [
            {"index": p.index, "tokens": p.tokens, "text": expr.text, "fingerprint": j.fingerprint, "logp": p.logp,
             "policy_version": p.policy_version, "proposal": p.to_dict()} for p, expr, j in judged])
        self.faults.hit("asked")
        self.proposed += len(proposals)
        self.ask_blocked = not proposals
        for p, expr, judgement in judged:
            self.open[p.index] = p
            self.texts[p.index], self.fps[p.index] = expr.text, judgement.fingerprint
            self._route(p.index, judgement, started=True)
        return bool(proposals)

    def _route(self, index: int, judgement, started: bool = False) -> None:
        """Act on a judgement: reward at once (screened, duplicate), wait for a twin (pending) or queue a child."""
        fp = judgement.fingerprint
        if judgement.status == "screened":
            self._finish_free(index, "screened", judgement.reward, judgement.reason)
        elif judgement.status == "duplicate":
            self._finish_free(index, "duplicate", judgement.reward, f"same function as candidate "
                              f"{self.first_child.get(fp)}", duplicate_of=self.first_child.get(fp))
        elif judgement.status == "pending":
            self.waiting.setdefault(fp, []).append(index)
            self.store.record_pending(index, f"waits for the child of candidate {self.active.get(fp)}")
        else:
            if not started:
                self.book.start(fp)
                self.active[fp] = index
            self.ready.append(index)

    def _launch_ready(self) -> None:
        while self.ready and len(self.inflight) < self.capacity() \
                and self.evaluated + len(self.inflight) + len(self.held) < self.budget:
            index = self.ready.popleft()
            seed = child_seed(self.config.seed, index)
            self.store.record_launch(index, seed)
            ref = submit_child(self.config, self.texts[index], seed, f"child-{index}", self._test_delay)
            now = time.monotonic()
            self.inflight[ref] = _Flight(index, self.fps[index], now,
                                         now + self.child_timeout if self.child_timeout else None)
            self.faults.hit("dispatch")

    def _collect(self, timeout: float) -> None:
        if not self.inflight:
            time.sleep(timeout)
            return
        done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        if done:
            done, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
        for ref in done:
            flight = self.inflight.pop(ref)
            self._child_done(flight, self._result_of(ref, flight))

    def _result_of(self, ref: ray.ObjectRef, flight: _Flight) -> dict:
        return child_result(ref, self.texts[flight.index], child_seed(self.config.seed, flight.index),
                            self.config.child.split, self.config.resources.max_retries)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for ref, flight in list(self.inflight.items()):
            if flight.deadline is not None and now > flight.deadline:
                ray.cancel(ref, force=True)
                del self.inflight[ref]
                self._child_done(flight, _failure_record(
                    "timeout", f"cancelled by the driver after {self.child_timeout:g} s", self.texts[flight.index],
                    child_seed(self.config.seed, flight.index), self.config.child.split))

    def _child_done(self, flight: _Flight, record: dict) -> None:
        self.faults.hit("result")
        if self.probation:
            if record["status"] == "failed":
                self.held.append((flight, record))
                errors = {r.get("error") for _, r in self.held}
                if len(self.held) >= PROBATION_CHILDREN:
                    if len(errors) == 1:
                        raise SystemicFailure(f"the first {len(self.held)} children all failed with: "
                                              f"{errors.pop()}")
                    self._release_held()
                return
            self._release_held()
        self._record_child(flight, record)

    def _release_held(self) -> None:
        """End probation: record the failures held back (they were the candidates' own)."""
        self.probation = False
        held, self.held = self.held, []
        for flight, record in held:
            self._record_child(flight, record)

    def _record_child(self, flight: _Flight, record: dict) -> None:
        index, fp = flight.index, flight.fingerprint
        system = is_system_failure(record)
        if system and self.system_failures[index] < self.config.resources.system_retries:
            # Not the candidate's doing: train it again later (same seed) instead of giving the function a zero.
            self.system_failures[index] += 1
            self.ready.append(index)
            self.progress.event(f"#{index} {record['status']} for the system's reasons ({record.get('error')}); "
                                f"queued again ({self.system_failures[index]} of "
                                f"{self.config.resources.system_retries})", show=False)
            return
        status, reward, record = child_reward(record, self.config.rewards.failed)
        seq = self.store.record_result(index, status, reward, metrics=record, reason=record.get("error"),
                                       node=record.get("node"))
        self.evaluated += 1
        self.session_children += 1
        self.active.pop(fp, None)
        if system:  # the candidate is told the penalty, but the function keeps no reward: a twin trains anew
            self.book.abandon(fp)
        else:
            self.book.record(fp, reward)
            self.first_child[fp] = index
        if self.best is None or reward > self.best["reward"]:
            self.best = {"reward": reward, "text": self.texts[index], "index": index}
            self.progress.event(f"new best  #{index}  {reward:.4f}  {self.texts[index]}", show=True)
        self.progress.event(f"#{index} {status} reward={reward:.4f} {self.texts[index]} (seed {record.get('seed')}, "
                            f"{record.get('wall_s') or 0:.1f} s{', ' + record['error'] if record.get('error') else ''})",
                            show=False)
        self._tell(index, reward, seq)
        for twin in self.waiting.pop(fp, []):
            if system:
                self._route(twin, self.book.judge(self.space.decode(self.open[twin].tokens)))
            else:
                self._finish_free(twin, "duplicate", reward, f"same function as candidate {index}",
                                  duplicate_of=index)

    def _finish_free(self, index: int, status: str, reward: float, reason: str,
                     duplicate_of: int | None = None) -> None:
        """Record a reward that needed no child (screened, duplicate) and tell it."""
        seq = self.store.record_result(index, status, reward, reason=reason, duplicate_of=duplicate_of)
        self.progress.event(f"#{index} {status} reward={reward:.4f} {self.texts[index]} ({reason})", show=False)
        self._tell(index, reward, seq)

    def _tell(self, index: int, reward: float, seq: int) -> None:
        self.faults.hit("told")
        update = self.proposer.tell(self.open.pop(index), reward)
        self.last_seq = seq
        self.ask_blocked = False
        if update:
            self._record_update(update)
            stats = update.get("stats", {})
            shown = ", ".join(f"{k} {v:.4g}" for k, v in stats.items() if isinstance(v, (int, float)))
            self.progress.event(f"controller update {update['version']}: {shown}", show=False)

    def _record_update(self, update: dict) -> None:
        self.store.record_update(int(update["version"]), self.last_seq, update["consumed"], update.get("stats", {}))
        self.faults.hit("update")
        self.checkpoint()

    def checkpoint(self) -> None:
        """Write the proposer's state as of journal event ``last_seq`` (atomic)."""
        write_checkpoint(self.checkpoint_path, {"format": 1, "event_seq": self.last_seq,
                                                "version": self.proposer.version,
                                                "proposer": self.proposer.state_dict()}, self.faults)
        self.checkpoint_seq = self.last_seq

    def _maybe_checkpoint(self) -> None:
        if self.last_seq - self.checkpoint_seq >= CHECKPOINT_EVERY_EVENTS:
            self.checkpoint()

    def cancel_inflight(self) -> None:
        """Cancel running children (a stopped session); they stay "running" in the store and rerun on resume."""
        for ref in self.inflight:
            ray.cancel(ref, force=True)
        for flight in self.inflight.values():
            self.book.abandon(flight.fingerprint)
        self.inflight.clear()

    # ------------------------------------------------------------ reporting

    def status_line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.session_children / elapsed * 60 if elapsed > 0 else 0.0
        remaining = self.budget - self.evaluated
        eta = _duration(remaining / rate * 60) if rate > 0 else "-"
        best = f"best {self.best['reward']:.4f} {self.best['text']}" if self.best else "best -"
        return (f"{self.evaluated}/{self.budget} children | {len(self.inflight)} in flight | {self.proposed} proposed "
                f"| {best} | {rate:.1f}/min | ETA {eta}")


# ---------------------------------------------------------------- one session

def run_search(run_dir: str | Path, out: TextIO | None = None, progress_every_s: float = 30.0,
               new_config: Config | None = None) -> RunResult:
    """Run (or continue) the search in ``run_dir`` until its budget is spent or it is stopped.

    ``run_dir`` must have been made by ``create_run``. ``new_config``: the run's config with other budget / resources
    settings, applied first (``update_run_config``). Progress goes to ``out`` (stdout by default) and run.log.
    Returns a ``RunResult``; raises ``UserError`` for a run directory that is busy, missing or inconsistent, or a
    ``new_config`` that changes the search itself.
    """
    run_dir = Path(run_dir)
    out = sys.stdout if out is None else out
    # The controller's tensors are tiny: extra threads only fight the workers for cores (10x slower on 2 cores).
    torch.set_num_threads(1)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a run directory (it needs {CONFIG_FILE} and {STORE_FILE})")
    with run_lock(run_dir):
        changes = update_run_config(run_dir, new_config) if new_config is not None else []
        config = load_config(run_dir / CONFIG_FILE)
        with Store.open(run_dir) as store, open(run_dir / LOG_FILE, "a") as log:
            progress = Progress(out, log, progress_every_s)
            for name, old, new in changes:
                progress.event(f"{name}: {old!r} -> {new!r}")
            return _session(run_dir, config, store, progress)


def _session(run_dir: Path, config: Config, store: Store, progress: Progress) -> RunResult:
    faults = _Faults(os.environ.get("ACTSEARCH_TEST_KILL_AT", ""))
    cpu_start = time.process_time()
    driver = Driver(run_dir, config, store, progress, faults)
    replayed = driver.restore()
    if not driver.remaining_work():
        progress.event(f"{run_dir}: already complete ({driver.evaluated}/{driver.budget} children); nothing to do")
        return _result("complete", driver, store, None)

    resumed = store.proposals() > 0
    progress.event(f"{'resuming' if resumed else 'starting'} {run_dir}: {driver.evaluated}/{driver.budget} children "
                   f"done, {len(driver.open)} open candidates, {replayed} journal events replayed")
    started_ray = connect_ray(config)
    outcome = "error"
    session = None
    try:
        capacity, total = cluster_capacity(config)
        if capacity < 1:
            r = config.resources
            raise UserError(f"resources: a child needs {r.cpus_per_child:g} CPU and {r.gpus_per_child:g} GPU, the "
                            f"Ray cluster has {total.get('CPU', 0):g} CPU and {total.get('GPU', 0):g} GPU")
        info = {**provenance_now(), "ray_address": config.resources.address or "embedded",
                "cluster": {"nodes": len([n for n in ray.nodes() if n.get("Alive")]),
                            "CPU": total.get("CPU", 0), "GPU": total.get("GPU", 0)},
                "children_at_once": capacity}
        session = store.start_session(info)
        provenance = {"session": session, "started_at": time.time(), **info}
        _write_provenance(run_dir, provenance)
        progress.event(f"Ray: {info['cluster']['nodes']} node(s), {total.get('CPU', 0):g} CPU, "
                       f"{total.get('GPU', 0):g} GPU; up to {capacity} children at once")
        with StopSignal(lambda text: progress.event(text)) as stop:
            clean = False
            try:
                outcome = driver.loop(stop)
                clean = True
            except SystemicFailure as exc:
                raise UserError(f"{exc} (a broken setup, not the candidates: fix it and resume with "
                                f"`actsearch resume {run_dir}`)") from None
            except KeyboardInterrupt:  # a second Ctrl-C: stop at once
                outcome = "interrupted"
                raise
            finally:
                if driver.inflight:
                    driver.cancel_inflight()
                if clean:  # after an exception the proposer may be ahead of the store: no checkpoint then
                    driver.checkpoint()
        return _result(outcome, driver, store, cpu_start)
    finally:
        progress.close()
        if session is not None:
            cpu = time.process_time() - cpu_start
            store.end_session(session, outcome, cpu)
            provenance["ended_at"] = time.time()
            provenance["outcome"] = outcome
            provenance["child_devices"] = sorted({f"{c['metrics'].get('host')}: {c['metrics'].get('device')}"
                                                  for c in store.candidates(CHILD_STATUSES)
                                                  if c["metrics"] and c["metrics"].get("device")})
            _write_provenance(run_dir, provenance)
            progress.event(f"session {session} ended: {outcome}; {driver.evaluated}/{driver.budget} children, "
                           f"driver CPU {cpu:.1f} s", show=False)
        if started_ray:
            ray.shutdown()


def _result(outcome: str, driver: Driver, store: Store, cpu_start: float | None) -> RunResult:
    handled = driver.session_children
    cpu_ms = None
    if cpu_start is not None and handled:
        cpu_ms = (time.process_time() - cpu_start) / handled * 1000
    return RunResult(outcome=outcome, evaluated=driver.evaluated, budget=driver.budget, proposals=store.proposals(),
                     updates=store.update_count(), best=store.best(), driver_cpu_ms_per_candidate=cpu_ms,
                     counts=store.counts())
