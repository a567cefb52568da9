"""The surrogate proposer (controller/surrogate.py): its contract, its features, and that it learns.

Contract: the same seed and calls give the same proposals; a proposer restored mid-way (through ``torch.save`` /
``torch.load(weights_only=True)``, with proposals in flight) proposes exactly what the original would; rewards may
come in any order, long after their asks; no function (fingerprint) is proposed twice, in flight or not; an
enumerated space finishes when its pool is spent.

Learning. On the synthetic task (target ``x * sigmoid(x)``, screened candidates earn 0) the surrogate beats random
search by a wide margin within ``BUDGETS`` proposals, in the one-unit space (enumerated pool) and in the two-unit
space (sampled pool). As in tests/test_learning.py (see its docstring) the claim is a mean over ``SEEDS`` with a
threshold far below its measured value: the Gaussian process's fit runs through LAPACK, whose rounding differs between
processors, so two machines may follow different trajectories from the same seed. The statistic is test_learning's
``top_mean`` (mean of the 10 best distinct rewards of a search), surrogate minus random search, averaged over seeds.
Note that ``search_synthetic`` counts proposals, not children; the surrogate never proposes a function twice, random
search does.
"""
import io
import random
import statistics

import numpy as np
import pytest
import torch
from test_learning import top_mean

from controller import ControllerSettings, Proposal, make_proposer
from controller.surrogate import (
    FIT_LIMIT,
    HYPER_EVERY,
    HYPER_FIT,
    Posterior,
    SurrogateProposer,
    enumerated_pool,
    fit_hyperparameters,
    fitted_rows,
    shape_features,
)
from search.language.errors import UserError
from search.language.expression import Expression
from search.language.index import FunctionIndex
from search.language.space import Space
from search.loop.local import search_synthetic

SMALL = Space(1, unary=("x", "neg", "abs", "square", "sin", "relu", "sigmoid", "beta"),
              binary=("add", "mul", "max", "sigmul", "sub"))  # 320 token strings, enumerated
TWO_UNITS = Space(2)  # sampled pool

SEEDS = range(10)  # used for nothing else: the measurements below are of other seed blocks
# Proposals per search, and the least mean gain over SEEDS of test_learning's top_mean (the mean of the 10 best
# distinct rewards), surrogate minus random search. Measured (2026-11-30, default settings) per block of seeds: mean
# gain, smallest gain of one seed, searches that found the target itself (surrogate vs random):
#   one unit, 100 proposals: 100-119 0.50 (0.29; 20 vs 3 of 20), 200-219 0.49 (0.32; 20 vs 6), 300-319 0.48 (0.30;
#     20 vs 3); surrogate 0.85, random search 0.35-0.37
#   two units, 128 proposals: 100-109 0.50 (0.35; 10 vs 1 of 10), 110-119 0.54 (0.31; 8 vs 0), 200-209 0.57 (0.48;
#     8 vs 0), 300-319 0.58 (0.45; 20 vs 0 of 20); surrogate 0.87-0.90, random search 0.30-0.37
# No single seed of the 110 gained less than 0.29, so a mean over 10 seeds below 0.2 would be a regression.
BUDGETS = {1: 100, 2: 128}
MIN_GAIN = 0.2


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def surrogate(space: Space, seed: int, **kw) -> SurrogateProposer:
    base = dict(kind="surrogate", surrogate_initial=8, surrogate_pool=300)
    base.update(kw)
    return make_proposer(ControllerSettings(**base), space, seed)


def reward_of(space: Space, proposal: Proposal) -> float:
    """A deterministic reward that differs between most functions (a third share the penalty 0), so the model
    chooses from the first asks after the initial design."""
    fingerprint = space.decode(proposal.tokens).fingerprint()
    assert proposal.fingerprint == fingerprint  # proposals carry their function's fingerprint
    value = int(fingerprint[:8], 16) / 16 ** 8
    return 0.0 if value < 1 / 3 else value


def through_torch_save(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def drive(proposer, space: Space, rounds: int, ask: int, rng: random.Random, pending: list | None = None):
    """Ask ``ask`` per round and tell a random half of what is in flight, in random order; returns (log of
    proposals, proposals still in flight)."""
    log, pending = [], list(pending or [])
    for _ in range(rounds):
        batch = proposer.ask(ask)
        log.append([(p.index, p.tokens) for p in batch])
        pending += batch
        rng.shuffle(pending)
        told, pending = pending[: len(pending) // 2], pending[len(pending) // 2:]
        for p in told:
            assert proposer.tell(p, reward_of(space, p)) is None
    return log, pending


# ---------------------------------------------------------------- the contract

@pytest.mark.parametrize("space", [SMALL, TWO_UNITS], ids=["enumerated", "sampled"])
def test_same_seed_same_proposals_other_seed_others(space):
    logs = [drive(surrogate(space, seed), space, 5, 6, random.Random(0))[0] for seed in (3, 3, 4)]
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


@pytest.mark.parametrize("space", [SMALL, TWO_UNITS], ids=["enumerated", "sampled"])
def test_restored_proposer_continues_exactly(space):
    """Snapshot after the model took over, with proposals in flight; restore into a proposer of another seed."""
    original = surrogate(space, 5)
    _, pending = drive(original, space, 4, 5, random.Random(1))
    assert pending and original._posterior is not None, "the snapshot must fall after the model took over"
    state = original.state_dict()
    expected = drive(original, space, 3, 5, random.Random(2), pending)
    restored = surrogate(space, 99)
    restored.load_state_dict(through_torch_save(state))
    assert drive(restored, space, 3, 5, random.Random(2), pending) == expected


def test_order_of_tells_does_not_matter():
    a, b = surrogate(TWO_UNITS, 0), surrogate(TWO_UNITS, 0)
    for _ in range(3):
        batch_a, batch_b = a.ask(8), b.ask(8)
        assert batch_a == batch_b
        for p in batch_a:
            a.tell(p, reward_of(TWO_UNITS, p))
        for p in reversed(batch_b):
            b.tell(p, reward_of(TWO_UNITS, p))
    assert a.ask(8) == b.ask(8)


def test_late_rewards_and_proposals_never_told():
    """Many proposals stay in flight for ever and the rest are told late and shuffled: nothing is proposed twice."""
    proposer = surrogate(TWO_UNITS, 1)
    rng = random.Random(0)
    asked, stale = [], []
    for round_ in range(6):
        batch = proposer.ask(10)
        asked += batch
        stale += batch[:3]  # never told
        late = [p for p in asked if p not in stale and p.index in proposer.outstanding and p.index < 10 * round_]
        rng.shuffle(late)
        for p in late:
            proposer.tell(p, reward_of(TWO_UNITS, p))
    fingerprints = [TWO_UNITS.decode(p.tokens).fingerprint() for p in asked]
    assert len(set(fingerprints)) == len(fingerprints)
    assert set(proposer.outstanding) >= {p.index for p in stale}


def test_enumerated_space_proposes_each_function_once_then_finishes():
    tokens, fingerprints, features = enumerated_pool(SMALL)
    assert len(tokens) == len(fingerprints) == len(features) > 50
    assert all(SMALL.decode(t).screen().ok for t in tokens)
    proposer = surrogate(SMALL, 2)
    asked = []
    while not proposer.finished:
        batch = proposer.ask(16)
        asked += batch
        for p in batch:
            proposer.tell(p, reward_of(SMALL, p))
    assert sorted(SMALL.decode(p.tokens).fingerprint() for p in asked) == sorted(fingerprints)
    assert proposer.ask(4) == []


def test_sampled_space_of_few_functions_ends_exhausted():
    """Issue 20, item 15: three units of [x, neg, abs] and [add, max] (209,952 token strings, sampled, few distinct
    functions): the sampled pool runs dry after ~100 proposals; the proposer must then be finished, not silent. The
    synthetic config's budget of 300 children, on the proposer directly."""
    space = Space(3, unary=("x", "neg", "abs"), binary=("add", "max"))
    assert not FunctionIndex.of(space).enumerable
    proposer = surrogate(space, 0, surrogate_initial=16, surrogate_pool=2000)
    asked = 0
    while not proposer.finished and asked < 300:
        batch = proposer.ask(4)
        assert batch or proposer.finished, "an ask that proposes nothing, with nothing in flight, must finish"
        asked += len(batch)
        for p in batch:
            proposer.tell(p, reward_of(space, p))
    assert proposer.finished and asked < 300
    assert proposer.ask(4) == []
    restored = surrogate(space, 1)
    restored.load_state_dict(through_torch_save(proposer.state_dict()))
    assert restored.finished  # a resume ends as exhausted too


def test_bad_settings_are_reported_by_field():
    bad = ControllerSettings(kind="surrogate", surrogate_initial=0, surrogate_kappa=-1.0, surrogate_pool=3)
    assert {name for name, _ in bad.problems()} == {"surrogate_initial", "surrogate_kappa", "surrogate_pool"}
    with pytest.raises(UserError, match="controller.surrogate_kappa"):
        make_proposer(bad, TWO_UNITS, seed=0)
    assert ControllerSettings(kind="surrogate").problems() == []


# ---------------------------------------------------------------- features

def test_features_see_shape_not_scale_offset_or_failure():
    def f(text):
        return shape_features(Expression.parse(text))

    swish = f("x * sigmoid(x)")
    assert np.linalg.norm(swish) == pytest.approx(1.0)
    assert np.allclose(f("x * sigmoid(x) + x * sigmoid(x) + beta"), swish)  # scale 2, offset 1
    assert not np.allclose(f("-(x * sigmoid(x))"), swish)
    assert f("beta") is None  # constant
    assert f("exp(exp(exp(x)))") is None  # not finite at x = 5
    assert np.isfinite(f("exp(exp(x))")).all()  # huge but finite: scaled before anything overflows


def test_a_function_in_flight_is_believed_and_its_neighbourhood_left_alone():
    def f(text):
        return shape_features(Expression.parse(text))

    observed = np.stack([f(t) for t in ("relu(x)", "tanh(x)", "sin(x)", "x * sigmoid(x)", "abs(x)", "x ** 2")])
    rewards = np.array([0.6, 0.4, 0.1, 0.9, 0.0, 0.0])
    model = Posterior(observed, rewards, fit_hyperparameters(observed, rewards, seed=0))
    candidates = np.stack([f("softplus(x)"), f("x * tanh(x)"), f("cos(x)")])
    first = model.select(candidates, np.zeros((0, candidates.shape[1])), 1, 10.0, lambda row: True)
    batch = model.select(candidates, np.zeros((0, candidates.shape[1])), 3, 10.0, lambda row: True)
    assert batch[:1] == first and sorted(batch) == [0, 1, 2]  # a batch never repeats a pick
    in_flight = model.select(candidates, candidates[first], 1, 10.0, lambda row: True)
    assert in_flight != first  # its sd shrank: another function leads now
    refused = model.select(candidates, candidates[:0], 3, 10.0, lambda row: row != first[0])
    assert len(refused) == 2 and first[0] not in refused  # a refused row is skipped, the rest still picked


def test_long_searches_fit_a_bounded_subset_and_refit_hyperparameters_in_steps():
    rewards = np.array([0.5] * (FIT_LIMIT + 300) + [0.9, 0.1])
    rows = fitted_rows(rewards)
    assert len(rows) == FIT_LIMIT and len(set(rows)) == FIT_LIMIT and list(rows) == sorted(rows)
    assert len(rewards) - 2 in rows  # the best is always among them
    assert np.array_equal(fitted_rows(rewards[:FIT_LIMIT]), np.arange(FIT_LIMIT))
    proposer = surrogate(TWO_UNITS, 0)
    drive(proposer, TWO_UNITS, 3, 8, random.Random(0))
    proposer.ask(1)
    assert proposer.hyper[0] == len(proposer.rewards) <= HYPER_FIT  # refitted on every ask while rewards are few
    proposer.hyper = (HYPER_FIT + 1, [0.0, 0.0, -3.0])  # as if fitted at HYPER_FIT + 1 rewards
    proposer.rewards += [(10_000 + i, p.tokens, 0.5) for i, p in enumerate(proposer.ask(HYPER_FIT))]
    proposer.ask(1)
    assert proposer.hyper == (HYPER_FIT + 1, [0.0, 0.0, -3.0])  # kept: fewer than HYPER_EVERY new rewards
    proposer.rewards += [(20_000 + i, p.tokens, 0.4) for i, p in enumerate(proposer.ask(HYPER_EVERY))]
    proposer.ask(1)
    assert proposer.hyper[0] == len(proposer.rewards)


# ---------------------------------------------------------------- learning

@pytest.mark.parametrize("core_units", [1, 2], ids=["enumerated", "sampled"])
def test_beats_random_search_on_the_synthetic_task(core_units):
    space = Space(core_units)
    gains = []
    for seed in SEEDS:
        runs = [search_synthetic(make_proposer(ControllerSettings(kind=kind), space, seed), space,
                                 BUDGETS[core_units], seed=seed, screened_reward=0.0) for kind in ("surrogate", "random")]
        gains.append(round(top_mean(runs[0]) - top_mean(runs[1]), 3))
    assert statistics.mean(gains) > MIN_GAIN, f"surrogate minus random, mean of the 10 best per seed: {gains}"
