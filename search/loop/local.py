"""A synchronous search in this process on the synthetic task: a proposer, the ``RewardBook`` and
``evaluator.synthetic.evaluate_synthetic``, no Ray and no run store. The learning tests and the learning-curve
benchmarks drive every proposer through it; a real search is ``search.loop.driver``."""
from __future__ import annotations

import math

from evaluator.synthetic import evaluate_synthetic
from search.loop.rewards import RewardBook


def search_synthetic(proposer, space, budget: int, target: str = "x * sigmoid(x)", noise: float = 0.0,
                     seed: int = 0, screened_reward: float = 0.0, reject_linear: bool = True,
                     ask_size: int | None = None) -> dict:
    """Drive ``proposer`` synchronously on the synthetic task for ``budget`` proposals (tests and benchmarks).

    Each round asks ``ask_size`` proposals and tells every reward before asking again; by default one learner batch
    for a policy proposer (every batch is then sampled by the latest policy) and 16 (as if 16 workers) for the
    others. Rewards come through
    ``search.loop.rewards.RewardBook`` as in a real search: screened candidates get ``screened_reward`` and never reach
    ``evaluate_synthetic``; a repeated function gets its recorded reward. Returns ``{"rewards": [per proposal],
    "status": [judgement status per proposal], "best_so_far": [per proposal], "updates": [update records],
    "evaluated": number of functions evaluated}``.
    """
    book = RewardBook(screened_reward, reject_linear)
    rewards: list[float] = []
    statuses: list[str] = []
    updates: list[dict] = []
    evaluated = 0
    if ask_size is None:
        learner = getattr(proposer, "learner", None)
        ask_size = learner.batch_size if learner is not None else 16
    while len(rewards) < budget and not proposer.finished:
        for proposal in proposer.ask(min(ask_size, budget - len(rewards))):
            expr = space.decode(proposal.tokens)
            judgement = book.judge(expr)
            reward = judgement.reward
            if judgement.status == "new":
                book.start(judgement.fingerprint)
                result = evaluate_synthetic(expr.text, target=target, noise=noise, seed=seed)
                evaluated += 1
                reward = result["accuracy"] if result["status"] == "ok" else screened_reward
                book.record(judgement.fingerprint, reward)
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
            "evaluated": evaluated}
