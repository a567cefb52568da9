"""How well the search loop keeps Ray workers busy, and what the driver itself costs per child.

Every measurement is the real loop (``search.loop.session.run_search`` on a fresh run directory in a temporary folder)
with the synthetic task, so a child's own work is a few milliseconds, and the child setting ``delay_s: 1``
that makes each child sleep 1 s first. For each N (default 2, 4, 8, 16) a fresh Python process starts an embedded
local Ray offering N logical CPUs exactly as a run does (``search.loop.pool.connect_ray`` with ``resources.num_cpus: N``,
``cpus_per_child: 1``) and runs two searches of ``waves * N`` children on it, one after the other:

- cold: the first search on the fresh Ray, as ``actsearch run`` sees it. Each Ray worker's first child imports torch
  and the project (about 1.5 s of CPU per worker when the machine is idle), so with N workers on few cores the first
  wave is late.
- warm: the second search, on the same (now warm) workers: what the loop sustains once running.

Columns: efficiency = children completed per second from the first dispatch to the last result (both read from the
run store's ``started_at`` / ``finished_at``, so Ray's start-up is excluded), divided by the ideal N / 1 s (target
>= 0.9). Driver CPU per child: the driver process's CPU time (all its threads: store writes, controller, bookkeeping,
Ray's client threads) between the first dispatch and the last result, divided by the children (target < 20 ms); a
thread samples ``time.process_time()`` every 20 ms and the value at each end is interpolated. "session" is the run
store's ``sessions.driver_cpu_s`` per child (the whole ``run_search`` session: setup, loop, final checkpoint; Ray was
already up). "w/ start" is the cold search's process CPU from the interpreter's start (imports, Ray's start, the
session) per child: what one ``actsearch run`` of that size costs the driver.

Sleeping children use no CPU, so N beyond the machine's cores is Ray bookkeeping, not compute. Usage::

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/orchestration.py [--workers 2 4 8 16] [--waves 6] [--json F]
    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/orchestration.py --schedules --workers 4 8

``--schedules`` compares the schedules (``search.loop.schedule``): asynchronous, and deterministic with depth 1, 2 and
4, each on children of equal length (1 s) and of very unequal length (0.1 to 1.9 s, 1 s on average), and prints each
one's efficiency: children per second from the first dispatch to the last result, over N (N busy workers' rate).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD_SLEEP_S = 1.0


class CpuSampler:
    """Samples ``(wall time, process CPU time)`` in a background thread, so the CPU spent between two wall-clock
    instants read later from the store can be interpolated."""

    def __init__(self, every_s: float = 0.02):
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), time.process_time()))
            if self._stop.wait(self.every_s):
                self.samples.append((time.time(), time.process_time()))
                return

    def cpu_at(self, wall: float) -> float:
        """Process CPU seconds at wall-clock time ``wall`` (linear between the samples around it)."""
        for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:]):
            if t0 <= wall <= t1:
                return c0 + (c1 - c0) * (wall - t0) / (t1 - t0) if t1 > t0 else c1
        raise ValueError(f"no CPU samples around {wall}")


def bench_config(workers: int, children: int, schedule: dict | None = None, spread: float = 0.0):
    """The search config of one measurement: synthetic task, PPO over two core units, N slots of 1 CPU; ``schedule``:
    the schedule section (default: the default's); ``spread``: children sleep 1 s x [1 - spread, 1 + spread]."""
    from search.loop.config import config_from_dict

    return config_from_dict({
        "seed": 0,
        "space": {"core_units": 2},  # a big space: few duplicates, so nearly every proposal becomes a child
        "controller": {"kind": "ppo", "batch_size": 16},
        "child": {"task": "synthetic", "noise": 0.01, "delay_s": CHILD_SLEEP_S, "delay_spread": spread},
        "schedule": schedule or {},
        "budget": {"children": children},
        "resources": {"address": "", "num_cpus": workers, "cpus_per_child": 1},
    })


SCHEDULES = {"asynchronous": {"mode": "asynchronous"}, "deterministic d=1": {"depth": 1},
             "deterministic d=2": {"depth": 2}, "deterministic d=4": {"depth": 4}}


def measure_schedules(workers: int, waves: int) -> dict:
    """Worker utilisation of each schedule (``SCHEDULES``) on one warm embedded Ray with ``workers`` CPUs, for
    children of equal length (1 s) and of very unequal length (0.1 to 1.9 s, as the proxy's 2 to 30 s)."""
    import ray

    from search.loop.pool import connect_ray

    children = waves * workers
    connect_ray(bench_config(workers, children))
    out: dict = {"workers": workers, "children": children, "rows": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="actsearch-schedules-") as tmp:
            measure_search(Path(tmp) / "warm-up", workers, children)
            for spread in (0.0, 0.9):
                for name, schedule in SCHEDULES.items():
                    run_dir = Path(tmp) / f"{name.replace(' ', '-')}-{spread}"
                    row = measure_search(run_dir, workers, children, bench_config(workers, children, schedule, spread))
                    out["rows"][f"{name} | spread {spread:g}"] = row
    finally:
        ray.shutdown()
    return out


def measure_search(run_dir: Path, workers: int, children: int, config=None) -> dict:
    """Run one search of ``children`` sleeping children on the current Ray; returns its measurements (see module)."""
    from search.loop.rundir import create_run
    from search.loop.session import run_search
    from search.loop.store import CHILD_STATUSES, Store

    create_run(run_dir, config or bench_config(workers, children))
    with CpuSampler() as sampler:
        result = run_search(run_dir, out=io.StringIO(), progress_every_s=3600)
    with Store.open(run_dir, readonly=True) as store:
        records = store.candidates(CHILD_STATUSES)
        session = store.sessions()[-1]
        proposals = store.proposals()
        problems = store.audit()
    if problems or result.evaluated != children:
        raise RuntimeError(f"N={workers}: the run went wrong: {result.outcome}, {result.evaluated}/{children} "
                           f"children, {problems[:3]}")
    failed = [c for c in records if c["status"] not in ("ok", "diverged")]
    if failed:
        raise RuntimeError(f"N={workers}: {len(failed)} children failed, e.g. {failed[0]['reason']}")
    first = min(c["started_at"] for c in records)
    last = max(c["finished_at"] for c in records)
    loop_cpu = sampler.cpu_at(last) - sampler.cpu_at(first)
    rate = children / (last - first)
    return {"children": children, "proposals": proposals, "updates": result.updates, "wall_s": last - first,
            "children_per_s": rate, "efficiency": rate / (workers / CHILD_SLEEP_S),
            "driver_cpu_ms_per_child": loop_cpu / children * 1000,
            "session_cpu_ms_per_child": session["driver_cpu_s"] / children * 1000}


def measure_workers(workers: int, waves: int) -> dict:
    """A cold then a warm search of ``waves * workers`` children on one fresh embedded Ray with ``workers`` CPUs."""
    import ray

    from search.loop.pool import connect_ray

    children = waves * workers
    connect_ray(bench_config(workers, children))  # the embedded Ray exactly as a run starts it
    try:
        with tempfile.TemporaryDirectory(prefix="actsearch-orchestration-") as tmp:
            cold = measure_search(Path(tmp) / "cold", workers, children)
            cold["process_cpu_ms_per_child"] = time.process_time() / children * 1000
            warm = measure_search(Path(tmp) / "warm", workers, children)
    finally:
        ray.shutdown()
    return {"workers": workers, "ideal_per_s": workers / CHILD_SLEEP_S, "cold": cold, "warm": warm}


def print_table(rows: list[dict]) -> None:
    """One line per N: efficiency and driver CPU per child, cold and warm, and each search's wall time and rate."""
    print(f"{'':20} {'efficiency':^13}  {'driver CPU ms per child':^33}  {'cold':^15}  {'warm':^15}")
    print(f"{'N':>3} {'children':>8} {'ideal/s':>7} {'cold':>6} {'warm':>6}  {'cold':>6} {'warm':>6} {'session':>8} "
          f"{'w/ start':>9}  {'wall s':>6} {'child/s':>8}  {'wall s':>6} {'child/s':>8}")
    for r in rows:
        c, w = r["cold"], r["warm"]
        print(f"{r['workers']:>3} {c['children']:>8} {r['ideal_per_s']:>7.0f} {c['efficiency']:>6.3f} "
              f"{w['efficiency']:>6.3f}  {c['driver_cpu_ms_per_child']:>6.1f} {w['driver_cpu_ms_per_child']:>6.1f} "
              f"{w['session_cpu_ms_per_child']:>8.1f} {c['process_cpu_ms_per_child']:>9.1f}  {c['wall_s']:>6.2f} "
              f"{c['children_per_s']:>8.2f}  {w['wall_s']:>6.2f} {w['children_per_s']:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16], help="logical CPUs (N) to try")
    parser.add_argument("--waves", type=int, default=6, help="budget = waves x N children per search")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    parser.add_argument("--schedules", action="store_true",
                        help="compare the schedules' worker utilisation (equal and unequal children) instead")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one N, print JSON
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.one:
        measure = measure_schedules if args.schedules else measure_workers
        print(json.dumps(measure(args.one, args.waves)))
        return
    if args.schedules:
        schedules(args)
        return

    started = time.monotonic()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"child = sleep {CHILD_SLEEP_S:g} s + synthetic reward; {args.waves} x N children per search")
    rows = []
    for workers in args.workers:  # a fresh process per N: its CPU time is that one run's, like `actsearch run`
        command = [sys.executable, str(Path(__file__).resolve()), "--one", str(workers), "--waves", str(args.waves)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"N={workers} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    print_table(rows)
    print(f"targets: efficiency >= 0.9, driver CPU < 20 ms per child; benchmark took "
          f"{time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "cores": os.cpu_count(),
                                         "waves": args.waves, "rows": rows}, indent=2) + "\n")


def schedules(args) -> None:
    """``--schedules``: each schedule's throughput, children per second from the first dispatch to the last result,
    and its efficiency: that rate over N busy workers' (N children a second: a child sleeps 1 s on average either
    way), per N, for equal and unequal children."""
    started = time.monotonic()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; {args.waves} x N children per search; PPO "
          f"batch 16 (the deterministic batch); children sleep 1 s (spread 0) or 0.1-1.9 s (spread 0.9)")
    print(f"{'N':>3}  {'schedule':<20} {'spread':>6}  {'efficiency':>10}  {'child/s':>8}  {'wall s':>7}")
    results = []
    for workers in args.workers:
        command = [sys.executable, str(Path(__file__).resolve()), "--schedules", "--one", str(workers), "--waves",
                   str(args.waves)]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"N={workers} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        for key, row in result["rows"].items():
            name, spread = key.split(" | spread ")
            print(f"{workers:>3}  {name:<20} {spread:>6}  {row['efficiency']:>10.3f}  {row['children_per_s']:>8.2f}  "
                  f"{row['wall_s']:>7.2f}")
    print(f"benchmark took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "cores": os.cpu_count(),
                                         "waves": args.waves, "schedules": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
