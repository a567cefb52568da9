"""Test-only driver entry point: ``actsearch`` that SIGKILLs itself at a named point of a candidate's life.

    python tests/killpoints.py POINT:N[,POINT:N] actsearch-arguments...

runs ``search.cli.main(arguments)`` with the store, checkpoint, proposer and pool functions wrapped so that the N-th
time the process reaches POINT it dies at once (no cleanup, as a power cut or ``kill -9`` would leave it). An empty
spec kills nothing. The product code knows nothing of this.

Points: ask (proposals in memory, not recorded), asked (recorded, not yet judged), dispatch (a child submitted),
result (a result arrived, not recorded), told (recorded, not yet told to the proposer), update (an update recorded,
no checkpoint yet), checkpoint (half of the checkpoint's temporary file written and synced), retrained (a
significance re-training recorded), rungs (early stopping's decisions recorded, the children's results not yet).
"""
from __future__ import annotations

import collections
import functools
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.base import Proposer  # noqa: E402
from search.loop import rundir  # noqa: E402
from search.loop.pool import ChildPool  # noqa: E402
from search.loop.store import Store  # noqa: E402

TARGETS: dict[str, int] = {}
HITS: collections.Counter = collections.Counter()


def armed(point: str) -> bool:
    return TARGETS.get(point) == HITS[point] + 1


def hit(point: str) -> None:
    if point in TARGETS:
        HITS[point] += 1
        if HITS[point] == TARGETS[point]:
            os.kill(os.getpid(), signal.SIGKILL)


def after(cls, name: str, point: str) -> None:
    """Reach ``point`` once ``cls.name`` has returned."""
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        hit(point)
        return out

    setattr(cls, name, wrapper)


def before(cls, name: str, point: str) -> None:
    """Reach ``point`` before ``cls.name`` runs."""
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        hit(point)
        return original(*args, **kwargs)

    setattr(cls, name, wrapper)


def wrap_poll() -> None:
    original = ChildPool.poll

    @functools.wraps(original)
    def poll(self, timeout):
        finished = original(self, timeout)
        for _ in finished:
            hit("result")
        return finished

    ChildPool.poll = poll


def wrap_checkpoint_write() -> None:
    original = rundir.atomic_write

    def atomic_write(path, data):
        if Path(path).name == rundir.CHECKPOINT_FILE:
            if armed("checkpoint"):
                tmp = Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}")
                with open(tmp, "wb") as f:  # a torn temporary file, real on disk, then death
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
            hit("checkpoint")
        return original(path, data)

    rundir.atomic_write = atomic_write


def main(spec: str, argv: list[str]) -> int:
    for part in filter(None, (p.strip() for p in spec.split(","))):
        point, _, n = part.partition(":")
        TARGETS[point] = int(n or 1)
    after(Proposer, "ask", "ask")
    after(Store, "record_ask", "asked")
    after(ChildPool, "submit", "dispatch")
    wrap_poll()
    before(Proposer, "tell", "told")
    after(Store, "record_update", "update")
    wrap_checkpoint_write()
    after(Store, "record_retraining", "retrained")
    after(Store, "record_rungs", "rungs")
    from search.cli import main as actsearch

    return actsearch(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
