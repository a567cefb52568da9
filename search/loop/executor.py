"""Executors: where the engine's children train. ``ChildPool`` (``search.loop.pool``) trains them on Ray workers;
``LocalExecutor`` trains them one after another in this process (the learning tests, the search-efficiency benchmark,
table replays, a machine without Ray). Both have one interface:

    with LocalExecutor(config, capacity=4) as executor:
        executor.submit(key, "x * sigmoid(x)", seed)
        for key, result in executor.poll(0.25):    # ChildResults, as ``train_child`` returns them
            ...
"""
from __future__ import annotations

from typing import Hashable

from evaluator.result import ChildResult
from search.loop.fidelity import RungBoard, RungDecision


class Executor:
    """What the engine needs of a place that trains children: capacity, submit, poll, cancel.

    config: the run's config (``child`` settings, ``resources``). ``cluster``: what the executor offers (nodes, CPU,
    GPU, children at once), set on entering.
    """

    def __init__(self, config):
        self.config = config
        self.cluster: dict = {}
        self.board: RungBoard | None = None  # early stopping's board, when the work stops children early

    def attach(self, board: RungBoard) -> None:
        """Children submitted from now on report to ``board`` (``search.loop.fidelity``)."""
        self.board = board

    def drain_rungs(self) -> list[RungDecision]:
        """The rung decisions taken since the last call (none without a board)."""
        return self.board.drain() if self.board is not None else []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.cancel_all()

    def capacity(self) -> int:
        """How many children fit at once now."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Children in flight."""
        raise NotImplementedError

    def has_room(self) -> bool:
        return len(self) < self.capacity()

    def submit(self, key: Hashable, activation: str, seed: int, name: str = "child") -> None:
        """Start one child: ``config.child``'s settings, ``activation`` (expression text or baseline name), ``seed``."""
        raise NotImplementedError

    def poll(self, timeout: float) -> list[tuple[Hashable, ChildResult]]:
        """Wait up to ``timeout`` s; ``(key, result)`` of the children that finished (never raises for a child's
        sake)."""
        raise NotImplementedError

    def cancel_all(self) -> list[Hashable]:
        """Cancel every child in flight (a stopped session); returns their keys."""
        raise NotImplementedError

    def lost(self, result: ChildResult) -> str | None:
        """Asked after ``result``, a child's failure for the system's reasons: a line saying where the children's
        machines went (a cluster that stopped answering), or None while they are there."""
        return None

    def lost_now(self) -> str | None:
        """Asked after each poll, children in flight or not: the same line when the children's machines went away
        without a child's failure saying so (a cluster's head stopped while Ray retries its tasks), else None."""
        return None


class LocalExecutor(Executor):
    """Children trained in this process, in submission order, when ``poll`` is called: ``capacity`` of them are "in
    flight" at once (submitted, not yet collected), so the engine asks and tells exactly as it would with that many
    Ray workers that finish in submission order. Deterministic: no clock, no threads."""

    def __init__(self, config, capacity: int = 1):
        super().__init__(config)
        from evaluator.train import train_child

        self._train = train_child
        self._capacity = max(1, int(capacity))
        self._queued: list[tuple[Hashable, str, int]] = []
        self.search_path = config.search_path()
        self.cluster = {"nodes": 1, "CPU": float(self._capacity), "GPU": 0.0, "children_at_once": self._capacity}

    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._queued)

    def submit(self, key: Hashable, activation: str, seed: int, name: str = "child") -> None:
        self._queued.append((key, activation, seed))

    def poll(self, timeout: float) -> list[tuple[Hashable, ChildResult]]:
        queued, self._queued = self._queued, []
        if self.board is not None and self.board.ordered:  # one child at a time, in the children's order
            queued.sort(key=lambda job: job[0])
        return [(key, self._run(key, activation, seed)) for key, activation, seed in queued]

    def _run(self, key: Hashable, activation: str, seed: int) -> ChildResult:
        if self.board is None:
            return self._train(self.config.child, activation, seed, search_path=self.search_path)
        self.board.launched(key)
        try:
            return self._train(self.config.child, activation, seed, search_path=self.search_path,
                               report=self.board.reporter(key))
        finally:
            self.board.ended(key)

    def cancel_all(self) -> list[Hashable]:
        keys = [key for key, _, _ in self._queued]
        self._queued.clear()
        return keys
