"""Re-training named functions over paired seeds, as the engine's work (``search.loop.engine``): significance tests
and tabular benchmarks of named functions.

Every job is an (activation, seed number ``s``) pair, queued at the start; a child trains with the seed
``retrain_seed(run seed, s)`` (``s`` itself where it replays a table: its recorded seed ``s``), the same for every
activation at seed number ``s``, so run ``s`` of every candidate and baseline shares its initialisation and data
order. Each result is written to the store as it arrives
(``Store.record_retraining``): a stopped study, run again, trains only what is missing.
"""
from __future__ import annotations

import collections

from evaluator.result import ChildResult, reward
from search.language.errors import UserError
from search.loop.config import Config, retrain_seed
from search.loop.engine import Engine, SystemicFailure
from search.loop.executor import Executor
from search.loop.pool import ChildPool
from search.loop.progress import Progress, StopSignal
from search.loop.store import Store


class Study:
    """The jobs of one study (``study``: its key in the store) and what their results mean."""

    noun = "re-trainings"

    def __init__(self, config: Config, study: str, store: Store, progress: Progress, jobs: list[tuple[str, int]]):
        self.config, self.study, self.store, self.progress = config, study, store, progress
        self.ready = collections.deque(jobs)
        self.total = len(jobs)
        self.recorded = 0

    def on_probation(self) -> bool:
        """Whether no re-training of this study has succeeded yet (the setup has not proven itself)."""
        return not any(r["status"] != "failed" for r in self.store.retrainings(self.study))

    # the engine's questions: every job is queued from the start, nothing is asked
    def finished(self, in_flight: int) -> str | None:
        return "complete" if self.recorded == self.total and not in_flight else None

    def idle(self) -> str:
        return "complete" if self.recorded == self.total else "interrupted"

    def room(self, committed: int, free: int) -> int:
        return 0

    def ask(self, room: int) -> bool:
        return False

    def may_launch(self, committed: int) -> bool:
        return True

    def tick(self) -> None:
        pass

    def status_parts(self) -> tuple[int, int, int, str]:
        return self.recorded, self.total, self.recorded, ""

    def child_seed(self, s: int) -> int:
        """The child seed of seed number ``s``: ``retrain_seed``, but ``s`` itself where the child replays a table,
        which hands back its recorded seed ``child seed mod S``: seed numbers 0..n-1 then read n distinct recorded
        seeds (n <= S: ``study_problem``), where derived seeds mod S repeat (10 seed numbers read about 6 of 10)."""
        return s if self.config.child.task == "table" else retrain_seed(self.config.seed, s)

    def launch(self, job: tuple[str, int]) -> tuple[str, int, str]:
        activation, s = job
        return activation, self.child_seed(s), f"retrain-{activation[:40]}-{s}"

    def requeued(self, job: tuple[str, int], result: ChildResult, attempt: int, retries: int) -> None:
        self.progress.event(f"{job[0]} seed #{job[1]} {result.status} for the system's reasons "
                            f"({result.error}); queued again ({attempt} of {retries})", show=False)

    def abandon(self, job: tuple[str, int]) -> None:
        pass

    def record(self, job: tuple[str, int], result: ChildResult) -> None:
        activation, s = job
        status, score, result = reward(result, self.config.rewards)
        if result.traceback:
            self.progress.event(f"{activation} seed #{s} raised:\n{result.traceback.rstrip()}", show=False)
        self.store.record_retraining(self.study, activation, s, self.child_seed(s), status, score,
                                     result.to_dict(), node=result.extra.get("node"))
        self.recorded += 1
        error = f", {result.error}" if result.error else ""
        self.progress.event(f"retrained {activation} seed #{s}: {status} score {score:.4f} "
                            f"({result.wall_s or 0:.1f} s{error})", show=False)


def retrain(config: Config, study: str, store: Store, progress: Progress, jobs: list[tuple[str, int]],
            executor: Executor | None = None, again: str = "run the same command again") -> tuple[str, int]:
    """Train ``jobs`` through the engine on ``executor`` (default: a ``ChildPool`` on Ray); returns ``(outcome,
    re-trainings recorded)``, the outcome "complete" or "interrupted". ``UserError`` for a broken setup (the first
    re-trainings all failing one way: nothing of them is recorded), saying how to go on once it is fixed (``again``)."""
    work = Study(config, study, store, progress, jobs)
    if executor is None:
        executor = ChildPool(config)
    outcome = "interrupted"
    with executor:
        progress.event(f"{executor.cluster['CPU']:g} CPU, {executor.cluster['GPU']:g} GPU; up to "
                       f"{executor.cluster['children_at_once']} re-trainings at once")
        engine = Engine(executor, work, progress, config.rewards, config.resources.system_retries,
                        probation=work.on_probation())
        with StopSignal(progress.event) as stop:
            try:
                outcome = engine.run(stop)
            except SystemicFailure as exc:
                raise UserError(f"{exc} (a broken setup, not the functions: fix it and {again})") from None
            finally:
                engine.stop()
    return outcome, work.recorded
