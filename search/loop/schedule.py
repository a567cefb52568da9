"""When a search asks and tells: deterministic (fixed batches, rewards told in proposal order) or asynchronous.

Deterministic scheduling (``schedule.mode``, the default) makes a search a function of its config and seed alone,
whatever the number of workers and the machine's load:

- proposals are asked in batches of ``schedule.batch``; batch j is asked only once every batch up to j - ``depth`` has
  all its rewards told (with depth 2 the workers train batch j while batch j + 1 is asked from the rewards up to j - 1);
- a reward is told to the proposer, and written to the store with its tell, only when every earlier proposal's
  reward has been told and, for a reward of batch k, once batch k + depth - 1 has been asked: so the proposer's calls
  come in one fixed sequence (ask batches 0 .. depth - 1; tell batch 0, ask batch depth; tell batch 1, ...) whatever
  order the children end in. Results that arrive early wait in memory (a crash loses them; their children, with the
  same seeds, train again). Once no batch will be asked any more (budget, proposal limit, proposer done), the
  rewards are told as their turn comes;
- early stopping decides in proposal order (``search.loop.fidelity``: a child waits at a rung for the children before
  it that are still training).

Asynchronous scheduling asks as many proposals as there are free workers and tells each reward when it arrives.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable

SCHEDULE_MODES = ("deterministic", "asynchronous")


@dataclass
class ScheduleSettings:
    """How the search asks for candidates and tells rewards. Deterministic (the default): proposals are asked in fixed
    batches, batch j only once every batch up to j - depth is told, rewards are told in proposal order and early
    stopping decides in proposal order: the same config and seed give the same search on 1 worker or 64, loaded or
    idle. Asynchronous: as many proposals as there are free workers, each reward told when it arrives (more
    throughput, no reproducibility). Measured idle cost: docs/benchmarks.md."""

    mode: str = "deterministic"  # deterministic | asynchronous
    batch: int = 0  # proposals per batch (deterministic); 0 = the controller's batch_size for ppo / reinforce, else 8
    depth: int = 2  # batches asked ahead of the rewards told (deterministic): batch j is asked once batch j - depth is told; 1 = ask, wait for every reward, ask again

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.mode not in SCHEDULE_MODES:
            out.append(("mode", f"must be one of {', '.join(SCHEDULE_MODES)}, got {self.mode!r}"))
        if not 0 <= self.batch <= 100_000:
            out.append(("batch", f"must be from 0 (= the controller's batch) to 100,000, got {self.batch}"))
        if not 1 <= self.depth <= 1_000:
            out.append(("depth", f"must be from 1 to 1,000, got {self.depth}"))
        return out


POLICY_KINDS = ("ppo", "reinforce")
DEFAULT_BATCH = 8


def batch_size(config) -> int:
    """Proposals per deterministic batch: ``schedule.batch``, else the policy's learner batch, else 8."""
    if config.schedule.batch:
        return config.schedule.batch
    return config.controller.batch_size if config.controller.kind in POLICY_KINDS else DEFAULT_BATCH


class Schedule:
    """The driver's asking and telling rules. ``open``: the driver's candidates asked and not yet told (a dict keyed
    by index, shared, read only here)."""

    def __init__(self, config, open_: dict):
        self.deterministic = config.schedule.mode == "deterministic"
        self.batch = batch_size(config)
        self.depth = config.schedule.depth
        self.open = open_
        self.batches: collections.deque[list[int]] = collections.deque()  # asked, some reward not told yet
        self.waiting: dict[int, tuple[Callable[[], None], bool]] = {}  # index -> (record and tell it, a child?)
        self.waiting_children = 0  # of them, trained children (they count against the budget already)
        self.batch_of: dict[int, int] = {}  # index -> the number of the batch it was asked in
        self.asks = 0  # batches asked
        self.final = False  # no batch will be asked any more: rewards are told as soon as it is their turn

    def restore(self, asks: list[tuple[int, int]]) -> None:
        """The batches (first index, count of each ask) with a candidate still open after a resume."""
        asks = [(first, count) for first, count in asks if count]
        self.asks = len(asks)
        self.batch_of = {i: k for k, (first, count) in enumerate(asks) for i in range(first, first + count)
                         if i in self.open}
        self.batches = collections.deque(list(range(first, first + count)) for first, count in asks
                                         if any(i in self.open for i in range(first, first + count)))

    def room(self, free: int) -> int:
        """How many proposals to ask now: a whole batch when fewer than ``depth`` are unsettled (deterministic), else
        the free workers (asynchronous)."""
        if not self.deterministic:
            return free
        while self.batches and not any(i in self.open for i in self.batches[0]):
            self.batches.popleft()
        return self.batch if len(self.batches) < self.depth else 0

    def asked(self, indices: list[int]) -> None:
        if self.deterministic and indices:
            self.batches.append(list(indices))
            self.batch_of.update((i, self.asks) for i in indices)
            self.asks += 1
            self._flush()  # the rewards of batch asks - depth may be told now

    def close(self) -> None:
        """No batch will be asked any more: tell every reward as its turn comes."""
        if not self.final:
            self.final = True
            self._flush()

    def settle(self, index: int, record: Callable[[], None], child: bool) -> None:
        """Record and tell candidate ``index`` (``record``) now (asynchronous), or when every earlier candidate is
        told (deterministic)."""
        if not self.deterministic:
            record()
            return
        self.waiting[index] = (record, child)
        self.waiting_children += child
        self._flush()

    def _turn(self) -> int | None:
        """The candidate whose reward may be told now, if it has arrived."""
        index = min(self.open) if self.open else None
        if index is None or index not in self.waiting:
            return None
        if not self.final and self.batch_of.get(index, -self.depth) + self.depth > self.asks:
            return None  # its batch's successor depth - 1 batches on has yet to be asked
        return index

    def _flush(self, everything: bool = False) -> None:
        while self.waiting and (everything or self._turn() is not None):
            index = min(self.waiting) if everything else self._turn()
            record, child = self.waiting.pop(index)
            self.waiting_children -= child
            record()  # tells index (it leaves ``open``); may settle candidates that waited for its function

    def drain(self) -> None:
        """Record and tell everything waiting, in index order (the search ends: a candidate before them will never
        get a reward, e.g. one the budget does not let train)."""
        self._flush(everything=True)
