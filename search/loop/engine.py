"""The engine: the one step loop every search, re-training study, table build, learning test and benchmark runs.

    ask -> judge -> route -> train (or look up) -> record -> tell

The engine owns what all of them share: dispatching queued work to an executor (``ChildPool`` on Ray, or
``LocalExecutor`` in this process) as capacity and budget allow, collecting results, re-queueing a child that failed
for the system's reasons (a lost worker, a timeout, data missing on a node: never the function's result), probation,
stopping on request, and the status line with its ETA.

Probation: a fresh setup (no child of it has succeeded yet) holds back its first failures. When the first
``PROBATION_CHILDREN`` children all fail with one error (numbers and ids in the error text aside, so "task 3f2a...
cancelled" and "task 9b1c... cancelled" are one error), the setup is broken, not the candidates, and
``SystemicFailure`` stops the engine before it spends the budget on failures; nothing of them is recorded. A child's
result is checked for the reward's metric first (``evaluator.result.reward``), so a misspelled ``rewards.metric`` or a
metric that is never finite is such a failure too. What to train and what a result means belongs to
the **work** it drives:

- ``search.loop.driver.Driver``: a search. ``ask`` asks the proposer and judges each proposal (screened and
  duplicate candidates get their reward at once, a twin of a function in training waits, a new function is queued);
  ``record`` writes a child's reward and tells it to the proposer.
- ``search.analysis.retrain.Study``: re-training named functions over paired seeds (significance, tables). All of its
  jobs are queued at the start; ``record`` writes each re-training.

A work has: ``noun``, ``ready`` (a deque of keys waiting for a worker), ``launch(key) -> (activation, seed, name)``,
``may_launch(committed)``, ``room(committed, free workers)``, ``ask(room) -> bool``, ``record(key, result)`` (a ``ChildResult``),
``requeued(key, result, attempt, retries)``, ``abandon(key)``, ``finished() -> outcome | None``, ``idle() -> outcome``,
``tick()``, ``status_parts() -> (done, total, done this session, extra text)``.
"""
from __future__ import annotations

import collections
import re
import time
from typing import Hashable

from evaluator.result import ChildResult, reward
from search.loop.executor import Executor
from search.loop.progress import Progress, StopSignal, duration

POLL_S = 0.25
PROBATION_CHILDREN = 3  # the first children of a setup all failing with one error: a broken setup, not candidates
_VARIABLE = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+(\.\d+)?")  # what differs between two reports of one error


class SystemicFailure(Exception):
    """The first children of a setup all failed the same way: the setup is broken, not the candidates."""


def same_error(text: str | None) -> str:
    """An error's text with its numbers and ids masked: what two failures of one broken setup share."""
    return _VARIABLE.sub("#", text or "")


class Engine:
    """Drives one ``work`` on one ``executor`` until the work is done or a stop is requested. Single-threaded.

    rewards: the run's ``rewards:`` settings (a result without a finite metric is a failure, also on probation).
    system_retries: how often a child that failed for the system's reasons is queued again (same seed) before its
    failure is recorded. probation: hold back failures until a child of this setup succeeds (see the module
    docstring); noun: what its message calls the children.
    """

    def __init__(self, executor: Executor, work, progress: Progress, rewards, system_retries: int = 0,
                 probation: bool = False):
        self.executor, self.work, self.progress, self.rewards = executor, work, progress, rewards
        self.system_retries = system_retries
        self.probation = probation
        self.held: list[tuple[Hashable, ChildResult]] = []  # failures held back on probation
        self.attempts: collections.Counter[Hashable] = collections.Counter()  # key -> system re-queues this session
        self.started = time.monotonic()
        self.gone = False  # the children's machines went away (Executor.lost): the session stops, as when interrupted
        self.board = getattr(work, "board", None)  # early stopping (search.loop.fidelity), when the work has it
        if self.board is not None:
            executor.attach(self.board)

    def committed(self) -> int:
        """Children in flight, queued, or held back on probation."""
        return len(self.executor) + len(self.work.ready) + len(self.held)

    def run(self, stop: StopSignal) -> str:
        """Step until the work says it is done (its outcome) or a stop is requested ("interrupted")."""
        work, executor = self.work, self.executor
        while not stop.requested and not self.gone:
            self.dispatch()
            outcome = work.finished(len(executor))
            if outcome:
                return outcome
            room = work.room(self.committed(), executor.capacity() - len(executor) - len(work.ready))
            if room > 0 and work.ask(room):
                continue
            if not len(executor):
                if self.held:  # fewer children than probation needs: they were the candidates' own failures
                    for key, result in self.release_held():
                        self.deliver(key, result)
                    continue
                if not work.ready:
                    return work.idle()
            finished = executor.poll(POLL_S)
            lost = executor.lost_now()
            if lost:  # what finished is kept; the rest runs again, same seeds, when the session is resumed
                self.stop_for(lost)
            decisions = executor.drain_rungs() if self.board is not None and not lost else []  # no Ray call now
            if decisions:  # rung decisions first: a stopped child's decision precedes its result
                work.record_rungs(decisions)
            for key, result in self.on_probation(finished):
                self.deliver(key, result)
            work.tick()
            self.progress.status(self.status_line())
        return "interrupted"

    def dispatch(self) -> None:
        """Hand queued work to the executor while it has room (and the work's budget allows)."""
        work = self.work
        while work.ready and self.executor.has_room() and work.may_launch(self.committed() - len(work.ready)):
            key = work.ready.popleft()
            activation, seed, name = work.launch(key)
            self.executor.submit(key, activation, seed, name)

    def on_probation(self, finished: list[tuple[Hashable, ChildResult]]) -> list[tuple[Hashable, ChildResult]]:
        """The results to deliver now; on probation, failures wait until a child succeeds or the setup is found
        broken (``SystemicFailure``)."""
        out = []
        for key, result in finished:
            if not self.probation or (result.system_failure and self.cluster_gone(result)):  # deliver abandons the latter
                out.append((key, result))
            elif (checked := reward(result, self.rewards)[2]).status == "failed":  # a missing metric fails too
                self.held.append((key, checked))
                if len(self.held) >= PROBATION_CHILDREN:
                    errors = {same_error(r.error) for _, r in self.held}
                    if len(errors) == 1:
                        raise SystemicFailure(f"the first {len(self.held)} {self.work.noun} all failed with: "
                                              f"{self.held[0][1].error}")
                    out += self.release_held()
            else:
                out += self.release_held()
                out.append((key, result))
        return out

    def release_held(self) -> list[tuple[Hashable, ChildResult]]:
        """End probation and return the failures held back."""
        self.probation = False
        held, self.held = self.held, []
        return held

    def deliver(self, key: Hashable, record: ChildResult) -> None:
        """A result arrived: queue a system failure again (while retries last), else the work records it. A system
        failure where the cluster itself went away is neither: the work forgets the child (it runs again, same seed,
        when the session is resumed) and the session stops."""
        if record.system_failure and self.cluster_gone(record):
            self.work.abandon(key)
            return
        if record.system_failure and self.attempts[key] < self.system_retries:
            self.attempts[key] += 1
            self.work.ready.append(key)
            self.work.requeued(key, record, self.attempts[key], self.system_retries)
            return
        self.work.record(key, record)

    def cluster_gone(self, result: ChildResult) -> bool:
        """Whether the children's machines went away (asked after ``result``, a system failure; ``Executor.lost``);
        the first time it says so, the session is told to stop."""
        if not self.gone:
            lost = self.executor.lost(result)
            if lost:
                self.stop_for(lost)
        return self.gone

    def stop_for(self, lost: str) -> None:
        """The children's machines went away (``lost`` says where): the session stops, as when interrupted."""
        self.gone = True
        self.progress.event(f"{lost}; the session stops (once Ray is back, a resume runs the children that did not "
                            f"finish)")

    def stop(self) -> None:
        """Cancel the children in flight (a stopped session); the work forgets them (they run again next time)."""
        for key in self.executor.cancel_all():
            self.work.abandon(key)

    def status_line(self) -> str:
        """``done/total noun | in flight | extra | rate | ETA``: the one status line of every loop."""
        done, total, session, extra = self.work.status_parts()
        elapsed = time.monotonic() - self.started
        rate = session / elapsed * 60 if elapsed > 0 else 0.0
        eta = duration((total - done) / rate * 60) if rate > 0 else "-"
        extra = f" | {extra}" if extra else ""
        return (f"{done}/{total} {self.work.noun} | {len(self.executor)} in flight{extra} | {rate:.1f}/min "
                f"| ETA {eta}")
