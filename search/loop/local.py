"""Searches in this process: the engine (``search.loop.engine``) with the ``LocalExecutor`` and a store in memory.

``search_local`` runs a config's search exactly as ``actsearch run`` would on Ray workers that finish in submission
order (the same proposals, the same children, the same seeds), but without Ray, files or a clock: the learning tests,
the learning-curve and search-efficiency benchmarks and their tests use it. ``search_synthetic`` and ``search_table``
build the config for the synthetic task and for a table replay.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

from search.loop.config import Config, config_from_dict
from search.loop.driver import Driver
from search.loop.engine import Engine
from search.loop.executor import LocalExecutor
from search.loop.progress import Progress
from search.loop.store import CHILD_STATUSES, FINAL_STATUSES, Store


@dataclass
class _NeverStop:
    requested: bool = False


def search_local(config: Config, proposer=None, capacity: int | None = None) -> dict:
    """Run ``config``'s search to its end in this process; ``proposer`` (default: the one the config names) is driven
    with ``capacity`` children in flight (default: one learner batch for a policy proposer, every batch then sampled
    by the latest policy, and 16 for the others).

    Returns ``{"outcome", "rewards": [per proposal], "status": ["new" for a trained child, else "screened" |
    "duplicate", per proposal], "best_so_far": [per proposal], "updates": [update records], "evaluated": children
    trained, "children": [(proposal number, fingerprint, reward) per trained child, in order], "steps": [child steps
    trained per trained child, in the same order: fewer than child.steps for a child stopped early, 0 where none were
    recorded], "stopped": [whether
    each was stopped early], "store": the store}``.
    """
    store = Store.in_memory()
    progress = Progress(io.StringIO(), io.StringIO(), math.inf)
    driver = Driver(None, config, store, progress, proposer)
    if capacity is None:
        learner = getattr(driver.proposer, "learner", None)
        capacity = learner.batch_size if learner is not None else 16
    driver.restore()
    with LocalExecutor(config, capacity=capacity) as executor:
        engine = Engine(executor, driver, progress, config.rewards, config.resources.system_retries)
        outcome = engine.run(_NeverStop())
    rows = store.candidates(FINAL_STATUSES)  # a deterministic batch may end with proposals the budget left untrained
    rewards = [r["reward"] for r in rows]
    best, best_so_far = -math.inf, []
    for r in rewards:
        best = max(best, r)
        best_so_far.append(best)
    trained = [(k, r) for k, r in enumerate(rows) if r["status"] in CHILD_STATUSES]
    children = [(k, r["fingerprint"], r["reward"]) for k, r in trained]
    steps = [int((r["metrics"] or {}).get("steps") or 0) for _, r in trained]  # as Store.child_steps counts them
    return {"outcome": outcome, "rewards": rewards, "best_so_far": best_so_far, "updates": store.updates(),
            "status": ["new" if r["status"] in CHILD_STATUSES else r["status"] for r in rows],
            "evaluated": len(children), "children": children, "steps": steps,
            "stopped": [r["status"] == "stopped" for _, r in trained], "store": store}


def _space(space) -> dict:
    return {"core_units": space.core_units, "unary": list(space.unary), "binary": list(space.binary)}


def search_synthetic(proposer, space, budget: int, target: str = "x * sigmoid(x)", noise: float = 0.0,
                     seed: int = 0, screened_reward: float = 0.0, reject_linear: bool = True,
                     ask_size: int | None = None) -> dict:
    """``search_local`` for ``budget`` proposals on the synthetic task (tests and benchmarks): a new function's reward
    is its similarity to ``target`` (``evaluate_synthetic``), ``screened_reward`` when it is not finite."""
    config = config_from_dict({
        "seed": seed, "space": _space(space), "child": {"task": "synthetic", "target": target, "noise": noise},
        "budget": {"children": budget, "max_proposals": budget},
        "rewards": {"screened": screened_reward, "failed": screened_reward, "reject_linear": reject_linear}})
    return search_local(config, proposer, ask_size)


def search_table(proposer, space, table, children: int, seed: int = 0, failed_reward: float = 0.0,
                 screened_reward: float = 0.0, ask_size: int | None = None, max_proposals: int | None = None,
                 fidelity: dict | None = None) -> dict:
    """``search_local`` for ``children`` trained children replayed from ``table`` (an ``evaluator.table_file.Table``):
    a function's reward is the recorded seed ``child seed mod S`` (``failed_reward`` when that child was not ok, or
    when the table lacks the function), as ``actsearch run`` with ``child.task: table`` gives it. The search also ends
    after ``max_proposals`` proposals (default 50 x children), or ``STALL_PROPOSALS`` in a row without a new
    function. ``fidelity`` (a ``fidelity:`` section, e.g. ``{"rungs": [17, 50], "eta": 3}``) replays early stopping
    on the table's recorded learning curves."""
    config = config_from_dict({
        "seed": seed, "space": _space(space), "fidelity": fidelity or {},
        "child": {"task": "table", "table": str(table.path), "steps": table.header.get("child", {}).get("steps", 500)},
        "budget": {"children": children, "max_proposals": max_proposals or 50 * children},
        "rewards": {"screened": screened_reward, "failed": failed_reward}})
    return search_local(config, proposer, ask_size)
