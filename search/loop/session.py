"""One session of a search: ``run_search`` takes the run's lock, reads its config back (refusing an edited search),
restores the ``Driver`` (``search.loop.driver``), connects the Ray ``ChildPool`` and runs the ``Engine`` until the
budget is spent, the search runs dry or a stop is requested; it records the session and the provenance either way."""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

import torch

from search.language.errors import UserError
from search.loop.config import Config, check_resume_overrides, config_with_overrides
from search.loop.driver import Driver
from search.loop.engine import Engine, SystemicFailure
from search.loop.pool import ChildPool, builds_kernel
from search.loop.progress import Progress, StopSignal
from search.loop.rewards import STALL_PROPOSALS  # noqa: F401  (what run's closing line quotes)
from search.loop.rundir import (
    LOG_FILE,
    check_fingerprints,
    provenance_now,
    require_writable_run_dir,
    run_config,
    run_lock,
    write_provenance,
    write_run_config,
)
from search.loop.store import CHILD_STATUSES, Store


@dataclass
class RunResult:
    """How a session ended. outcome: finished (budget spent) | exhausted (the proposer has nothing more) |
    stalled (``STALL_PROPOSALS`` proposals in a row brought no new function) | proposal-limit
    (budget.max_proposals reached) | complete (nothing was left to do) | interrupted."""

    outcome: str
    evaluated: int
    budget: int
    proposals: int
    updates: int
    driver_cpu_ms_per_candidate: float | None = None  # the session's driver CPU (its start included) per child
    session_children: int = 0  # children this session handled
    counts: dict = field(default_factory=dict)



def run_search(run_dir: str | Path, out: TextIO | None = None, progress_every_s: float = 30.0,
               overrides: tuple[str, ...] = ()) -> RunResult:
    """Run (or continue) the search in ``run_dir`` until its budget is spent or it is stopped.

    ``run_dir`` must have been made by ``create_run``. ``overrides``: ``--set`` changes of budget / resources / confirm;
    they are written to ``config.yaml`` only once the session has started (a resume that fails keeps the old ones).
    Progress goes to ``out`` (stdout by default) and run.log. Returns a ``RunResult``; raises ``UserError`` for a run
    directory that is busy, missing or inconsistent, or overrides that change the search itself.
    """
    run_dir = require_writable_run_dir(run_dir)
    out = sys.stdout if out is None else out
    check_resume_overrides(overrides)
    # The controller's tensors are tiny: extra threads only fight the workers for cores (10x slower on 2 cores).
    torch.set_num_threads(1)
    with run_lock(run_dir), Store.open(run_dir) as store:
        stored = run_config(run_dir, store)
        check_fingerprints(run_dir, store)
        config = config_with_overrides(stored, overrides)
        with open(run_dir / LOG_FILE, "a") as log:
            progress = Progress(out, log, progress_every_s)
            try:
                return _session(run_dir, stored, config, store, progress)
            finally:
                progress.close()


def _session(run_dir: Path, stored: Config, config: Config, store: Store, progress: Progress) -> RunResult:
    cpu_start = time.process_time()
    driver = Driver(run_dir, config, store, progress)
    replayed = driver.restore()
    changes = stored.section_differences(config, ("budget", "resources", "confirm"))
    if not driver.remaining_work():  # nothing starts, so nothing changes (not even budget / resources settings)
        done = f"{driver.evaluated}/{driver.budget} children" if driver.evaluated <= driver.budget else \
            f"{driver.evaluated} children, more than the budget of {driver.budget}"
        own = stored.budget.children  # a resume may have raised it past the budget this command asks for
        more = (f"; the run's own budget is {own} children: `actsearch resume {run_dir}` continues to it"
                if own > driver.budget and driver.evaluated < own else "")
        progress.event(f"{run_dir}: already complete ({done}); nothing to do{more}")
        return _result("complete", driver, store, None)

    resumed = store.proposals() > 0
    progress.event(f"{'resuming' if resumed else 'starting'} {run_dir}: {driver.evaluated}/{driver.budget} children "
                   f"done, {len(driver.open)} open candidates, {replayed} journal events replayed")
    outcome, session = "error", None
    _prepare_kernel(config, progress, store)
    with ChildPool(config) as pool:
        _prepare_nodes(pool, progress, store)  # before the session starts: an interrupt here leaves nothing half-recorded
        engine = Engine(pool, driver, progress, config.rewards, config.resources.system_retries,
                        probation=driver.on_probation())
        if changes:  # the session has started: now the new budget / resources settings are the run's
            write_run_config(run_dir, config)
            for name, old, new in changes:
                progress.event(f"{name}: {old!r} -> {new!r}")
        info = {**provenance_now(), "ray_address": config.resources.address or "embedded", "cluster": pool.cluster,
                "children_at_once": pool.cluster["children_at_once"]}
        session = store.start_session(info)
        provenance = {"session": session, "started_at": time.time(), **info}
        write_provenance(run_dir, provenance)
        progress.event(f"Ray: {pool.cluster['nodes']} node(s), {pool.cluster['CPU']:g} CPU, {pool.cluster['GPU']:g} "
                       f"GPU; up to {pool.cluster['children_at_once']} children at once")
        try:
            with StopSignal(progress.event) as stop:
                clean = False
                try:
                    outcome = engine.run(stop)
                    clean = True
                except SystemicFailure as exc:
                    raise UserError(f"{exc} (a broken setup, not the candidates: fix it and resume with "
                                    f"`actsearch resume {run_dir}`)") from None
                except KeyboardInterrupt:  # a second Ctrl-C: stop at once
                    outcome = "interrupted"
                    raise
                finally:
                    engine.stop()
                    if clean:  # after an exception the proposer may be ahead of the store: no checkpoint then
                        driver.checkpoint()
            return _result(outcome, driver, store, cpu_start)
        finally:
            cpu = time.process_time() - cpu_start
            store.end_session(session, outcome, cpu)
            provenance.update(ended_at=time.time(), outcome=outcome, child_devices=sorted({
                f"{c['metrics'].get('host')}: {c['metrics'].get('device')}" for c in store.candidates(CHILD_STATUSES)
                if c["metrics"] and c["metrics"].get("device")}))
            write_provenance(run_dir, provenance)
            progress.event(f"session {session} ended: {outcome}; {driver.evaluated}/{driver.budget} children, "
                           f"driver CPU {cpu:.1f} s", show=False)


def same_kernel(store: Store, kernels: Sequence[str], where: str) -> None:
    """``UserError`` when the children of this session would run their candidates with another kernel than the run's
    children so far, or with two at once (``kernels``: what the session's machines would use): a child's reward
    depends on the kernel (the same candidate and seed train to other weights: docs/fidelity.md), so a run never
    mixes them silently. The native kernel falls back to eager where it cannot be built (no C++ compiler)."""
    from search.language import native

    kernels = sorted(set(kernels) - {"torch"})
    used = [k for k in store.child_kernels() if k != "torch"]
    reason = native.unavailable_reason()
    why = f" (the native kernel cannot be built here: {reason})" if reason else ""
    if len(kernels) > 1:
        raise UserError(f"{where} would run candidates with different kernels ({', '.join(kernels)}){why}: a run "
                        f"does not mix them; give every node a C++ compiler, or set child.kernel: eager in a new run")
    if used and kernels and kernels[0] not in used:
        raise UserError(f"this run's children ran with the {' and '.join(used)} kernel, {where} would run the "
                        f"{kernels[0]} one{why}: their rewards would not be comparable; resume where the "
                        f"{used[0]} kernel runs")


def _prepare_kernel(config: Config, progress: Progress, store: Store) -> None:
    """Build (or load) the native activation kernel in the driver when an embedded Ray's children will run it, before
    they start: built once per machine (about 40 s), it would otherwise be built by the first children while the
    driver counts their deadlines."""
    if config.resources.address or not builds_kernel(config):  # a cluster's nodes: ChildPool.prepare_nodes
        return
    from evaluator.activations import SWISH
    from evaluator.train import prepare_kernel

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as said:  # "running eager": the refusal below says it in its line
        warnings.simplefilter("always")
        kernel = prepare_kernel(config.child, SWISH)
    took = time.perf_counter() - start
    if took > 5:
        progress.event(f"native activation kernel built in {took:.0f} s (once per machine)")
    same_kernel(store, [kernel] if kernel else [], "this machine")
    for warning in said:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _prepare_nodes(pool: ChildPool, progress: Progress, store: Store) -> None:
    """A cluster's nodes build (or load) the children's kernel before the first child starts, and the run log says
    how long that took and where it failed."""
    start = time.perf_counter()
    prepared = pool.prepare_nodes()
    if prepared:
        kernels = sorted({p["kernel"] or "none" for p in prepared if "error" not in p})
        progress.event(f"activation kernel ({', '.join(kernels) or 'none'}) ready on "
                       f"{sum('error' not in p for p in prepared)}/{len(prepared)} node(s) in "
                       f"{time.perf_counter() - start:.0f} s")
        for p in prepared:
            if "error" in p:
                progress.event(f"node {p['node']}: the kernel was not prepared ({p['error']}); its first child "
                               f"builds it")
        same_kernel(store, [p["kernel"] for p in prepared if "error" not in p and p["kernel"]], "the cluster's nodes")


def _result(outcome: str, driver: Driver, store: Store, cpu_start: float | None) -> RunResult:
    handled = driver.session_children
    cpu_ms = None
    if cpu_start is not None and handled:
        cpu_ms = (time.process_time() - cpu_start) / handled * 1000
    return RunResult(outcome=outcome, evaluated=driver.evaluated, budget=driver.budget, proposals=store.proposals(),
                     updates=store.update_count(), driver_cpu_ms_per_candidate=cpu_ms, counts=store.counts(),
                     session_children=handled)
