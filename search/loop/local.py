"""Synchronous searches in this process: a proposer, the ``RewardBook`` and a scorer, no Ray and no run store.

``search_local`` drives any proposer with any scorer; ``search_synthetic`` scores on the synthetic task (the learning
tests and learning-curve benchmarks) and ``search_table`` replays a tabular benchmark (``benchmarks/search_efficiency.py``
and its test). A real search is ``search.loop.driver``; a replayed child here gets the seed the driver would give it
(``child_seed(seed, index)``), so it draws the same recorded seed as ``actsearch run`` with ``child.task: table``.
"""
from __future__ import annotations

import math
from typing import Callable

from evaluator.synthetic import evaluate_synthetic
from search.language.expression import Expression
from search.loop.config import child_seed
from search.loop.rewards import STALL_PROPOSALS, RewardBook

# score(expression, fingerprint, child seed) -> reward: what the child of a new function earns
Scorer = Callable[[Expression, str, int], float]


def search_local(proposer, space, score: Scorer, budget: int, count: str = "proposals", seed: int = 0,
                 screened_reward: float = 0.0, reject_linear: bool = True, ask_size: int | None = None,
                 max_proposals: int | None = None, stall: int | None = None) -> dict:
    """Drive ``proposer`` synchronously until ``budget`` proposals (``count`` "proposals") or trained children
    (``count`` "children") or ``max_proposals`` proposals, until ``stall`` proposals in a row brought no new function
    (as ``actsearch run`` stops a stalled search), or until it is finished.

    Each round asks ``ask_size`` proposals and tells every reward before asking again; by default one learner batch
    for a policy proposer (every batch is then sampled by the latest policy) and 16 (as if 16 workers) for the
    others. Rewards come through ``RewardBook`` as in a real search: screened candidates get ``screened_reward`` and
    never reach ``score``; a repeated function gets its recorded reward. Returns ``{"rewards": [per proposal],
    "status": [judgement status per proposal], "best_so_far": [per proposal], "updates": [update records],
    "evaluated": number of functions scored, "children": [(proposal number, fingerprint, reward) per scored
    function, in order]}``.
    """
    book = RewardBook(screened_reward, reject_linear)
    rewards: list[float] = []
    statuses: list[str] = []
    updates: list[dict] = []
    children: list[tuple[int, str, float]] = []
    if ask_size is None:
        learner = getattr(proposer, "learner", None)
        ask_size = learner.batch_size if learner is not None else 16
    limit = math.inf if max_proposals is None else max_proposals
    since_new = 0

    def spent() -> int:
        return len(rewards) if count == "proposals" else len(children)

    while spent() < budget and len(rewards) < limit and not proposer.finished and (stall is None or since_new < stall):
        room = min(ask_size, budget - spent()) if count == "proposals" else ask_size
        proposals = proposer.ask(min(room, limit - len(rewards)))
        if not proposals:
            break
        for proposal in proposals:
            expr = space.decode(proposal.tokens)
            judgement = book.judge(expr)
            reward = judgement.reward
            since_new += 1
            if judgement.status == "new":
                since_new = 0
                book.start(judgement.fingerprint)
                reward = score(expr, judgement.fingerprint, child_seed(seed, proposal.index))
                book.record(judgement.fingerprint, reward)
                children.append((len(rewards), judgement.fingerprint, reward))
            rewards.append(reward)
            statuses.append(judgement.status)
            update = proposer.tell(proposal, reward)
            if update is not None:
                updates.append(update)
    best, best_so_far = -math.inf, []
    for r in rewards:
        best = max(best, r)
        best_so_far.append(best)
    return {"rewards": rewards, "status": statuses, "best_so_far": best_so_far, "updates": updates,
            "evaluated": len(children), "children": children}


def search_synthetic(proposer, space, budget: int, target: str = "x * sigmoid(x)", noise: float = 0.0,
                     seed: int = 0, screened_reward: float = 0.0, reject_linear: bool = True,
                     ask_size: int | None = None) -> dict:
    """``search_local`` for ``budget`` proposals on the synthetic task (tests and benchmarks): a new function's reward
    is its similarity to ``target`` (``evaluate_synthetic``, noise seeded by ``seed``), ``screened_reward`` when it
    is not finite."""

    def score(expr: Expression, fingerprint: str, child: int) -> float:
        result = evaluate_synthetic(expr.text, target=target, noise=noise, seed=seed)
        return result["accuracy"] if result["status"] == "ok" else screened_reward

    return search_local(proposer, space, score, budget, "proposals", seed, screened_reward, reject_linear, ask_size)


def search_table(proposer, space, table, children: int, seed: int = 0, failed_reward: float = 0.0,
                 screened_reward: float = 0.0, ask_size: int | None = None, max_proposals: int | None = None) -> dict:
    """``search_local`` for ``children`` trained children replayed from ``table`` (an ``evaluator.tabular.Table``):
    a function's reward is the recorded seed ``child seed mod S`` (``failed_reward`` when that child was not ok, or
    when the table lacks the function). ``max_proposals`` (default 50 x children) ends a search that only repeats
    itself, and so does ``STALL_PROPOSALS`` proposals in a row without a new function (as in ``actsearch run``)."""

    def score(expr: Expression, fingerprint: str, child: int) -> float:
        row = table.by_fingerprint.get(fingerprint)
        if row is None:
            return failed_reward
        _, status, accuracy = table.draw(row, child)
        return accuracy if status == "ok" else failed_reward

    return search_local(proposer, space, score, children, "children", seed, screened_reward, True, ask_size,
                        50 * children if max_proposals is None else max_proposals, STALL_PROPOSALS)
