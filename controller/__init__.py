"""Controllers: proposers of candidates behind one contract (``controller.base.Proposer``).

Kinds (``ControllerSettings.kind``, found in ``controller.kinds.KINDS``): ``ppo`` and ``reinforce`` (an LSTM policy, ``controller.policy``, trained by
``controller.learner``), ``random``, ``exhaustive``, ``evolution`` (regularized evolution) and ``surrogate`` (a
Gaussian process on the functions' shapes, ``controller.surrogate``). The loop that drives them never needs to know
which one runs. A complete synchronous loop on the synthetic task::

    import torch
    from controller import ControllerSettings, make_proposer
    from evaluator.synthetic import evaluate_synthetic
    from search.loop.rewards import RewardBook
    from search.language.space import Space

    space = Space(core_units=2)
    proposer = make_proposer(ControllerSettings(kind="ppo", batch_size=16), space, seed=0)
    book = RewardBook(screened_reward=0.0, reject_linear=True)
    while not proposer.finished and proposer.version < 5:
        for proposal in proposer.ask(16):
            expr = space.decode(proposal.tokens)
            judgement = book.judge(expr)           # screened / duplicate: a reward without training a child
            reward = judgement.reward
            if judgement.status == "new":
                book.start(judgement.fingerprint)
                reward = evaluate_synthetic(expr.text)["accuracy"]
                book.record(judgement.fingerprint, reward)
            update = proposer.tell(proposal, reward)   # the 16th tell of a batch returns the update record
            if update:
                print(update["version"], update["stats"]["mean_reward"], update["stats"]["entropy"])
    torch.save(proposer.state_dict(), "controller.pt")  # everything, RNG states included

    resumed = make_proposer(ControllerSettings(kind="ppo", batch_size=16), space, seed=0)
    resumed.load_state_dict(torch.load("controller.pt"))  # proposes exactly what ``proposer`` would

A real search asks a batch, hands the proposals to workers and tells each reward when its child finishes, in any
order; proposals carry what the learner needs (behaviour log-probability, policy version) to learn from late rewards.
"""
from __future__ import annotations

from controller.base import Proposal, Proposer
from controller.kinds import KINDS, Kind
from controller.settings import ControllerSettings
from search.language.errors import UserError
from search.language.space import Space

__all__ = ["ControllerSettings", "KINDS", "Kind", "Proposal", "Proposer", "make_proposer"]


def make_proposer(settings: ControllerSettings, space: Space, seed: int) -> Proposer:
    """The proposer ``settings.kind`` names (``KINDS``), for ``space``, seeded with ``seed``; ``UserError`` for bad
    settings (a wrong kind lists the valid ones)."""
    problems = settings.problems()
    if problems:
        raise UserError("; ".join(f"controller.{name}: {what}" for name, what in problems))
    return KINDS[settings.kind].build(settings, space, seed)
