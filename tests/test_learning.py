"""Learning, tested: on the synthetic task (target ``x * sigmoid(x)``, 2-unit space, 500 proposals, 10 seeds) PPO,
REINFORCE and regularized evolution beat random search, their rewards rise and the policies settle without collapsing
onto degenerate functions, with the default ``ControllerSettings``.

Each proposer is driven by the small synchronous loop ``search.loop.local.search_synthetic``: rewards come through
``RewardBook``, so screened candidates (constant, linear, non-finite) get the penalty 0 and are never evaluated, and a
repeated function gets its recorded reward.

Why every claim is a mean over seeds with a margin. A learner's trajectory depends on floating-point rounding (the
LSTM's BLAS kernels differ between processors), so from the same seed two machines soon follow different
trajectories: in effect different draws. Per seed the learners beat random search's best only 75-85% of the time
(random search finds the target itself in about one seed in eight, and a learner often settles first on the local
optimum ``sigmoid(x) * softplus(x)``, 0.856), so the former claim "beats random search in 8 of 10 seeds" failed on
6-11 of 20 fresh sets of 10 seeds. Here each claim is a statistic over ``SEEDS`` whose threshold lies far below its
expected value: ``benchmarks/seed_blocks.py`` computes every statistic of this file on the 20 disjoint blocks of 10
seeds in 100-299 and on 20,000 resampled seed sets. No block and no resampled set failed any assertion; the normal
tail beyond the threshold is at most ~1e-4 per assertion (REINFORCE's gain over random search). Seeds 0-9 were used
neither for that nor for choosing the settings (seeds 1000-1039).

"Beats random search" compares the mean of the ``TOP`` best distinct rewards of a search (what a search hands on to
be re-evaluated): per seed it separates learners from random search more than twice as clearly as the single best,
which random search now and then hits by luck.
"""
import statistics

import pytest
import torch

from controller import ControllerSettings, make_proposer
from search.language.space import Space
from search.loop.local import search_synthetic

SEEDS = range(10)
BUDGET = 500
TARGET = "x * sigmoid(x)"
SPACE = Space(core_units=2)
LEARNERS = ("ppo", "reinforce", "evolution")

TOP = 10  # distinct rewards averaged per search for "beats random search"
# Thresholds (expected values and spreads over seed sets: benchmarks/seed_blocks.py; see the module docstring).
MIN_TOP_GAIN = 0.04  # mean over seeds of the TOP best distinct rewards, learner minus random search (~0.14-0.21)
MIN_REWARD_RISE = 0.1  # mean over seeds of the mean reward per batch, last minus first quarter of updates (~0.22)
MIN_ENTROPY_DROP = 2.0  # mean over seeds of the policy's entropy in nats, first minus last quarter of updates (~4)
MIN_EVOLUTION_RISE = 0.12  # mean over seeds of the mean reward, last minus first 100 proposals (~0.26)
MAX_SCREENED_SHARE = 0.12  # mean over seeds of the share of screened candidates among the last 100 (~0.02-0.03)
# PPO's step stays inside its trust region: medians over all updates of all seeds (controller/settings.py: ~0.025
# nats, ~0.38); at the former defaults (lr 0.02, 4 epochs, no KL stop) they were ~0.5-1.2 nats and 1.0.
MAX_MEDIAN_KL = 0.05
MAX_MEDIAN_CLIP_FRACTION = 0.6


@pytest.fixture(scope="module")
def runs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the policy's tensors are tiny: extra threads only spin against other processes
    out = {}
    for kind in ("random",) + LEARNERS:
        settings = ControllerSettings(kind=kind)
        out[kind] = [search_synthetic(make_proposer(settings, SPACE, seed), SPACE, BUDGET, target=TARGET, seed=seed,
                                      screened_reward=0.0) for seed in SEEDS]
    torch.set_num_threads(threads)
    return out


# ---------------------------------------------------------------- the statistics (benchmarks/seed_blocks.py uses them)
# A run is search_synthetic's result: "rewards" and "status" per proposal, "updates" (records with "stats").

def top_mean(run: dict, k: int = TOP) -> float:
    """Mean of the ``k`` best distinct rewards of a run (a function and its rescaled copies earn one reward)."""
    return statistics.mean(sorted({round(r, 9) for r in run["rewards"]}, reverse=True)[:k])


def top_gain(mine: list[dict], random_runs: list[dict]) -> float:
    """Mean over seeds of ``top_mean``, a learner's runs minus random search's."""
    return statistics.mean(map(top_mean, mine)) - statistics.mean(map(top_mean, random_runs))


def quarter_change(run: dict, key: str) -> float:
    """An update stat averaged over the last quarter of a run's updates minus over the first quarter."""
    stats = [u["stats"][key] for u in run["updates"]]
    quarter = len(stats) // 4
    return statistics.mean(stats[-quarter:]) - statistics.mean(stats[:quarter])


def reward_rise(runs_: list[dict]) -> float:
    return statistics.mean(quarter_change(r, "mean_reward") for r in runs_)


def entropy_drop(runs_: list[dict]) -> float:
    return -statistics.mean(quarter_change(r, "entropy") for r in runs_)


def evolution_rise(runs_: list[dict]) -> float:
    return statistics.mean(statistics.mean(r["rewards"][-100:]) - statistics.mean(r["rewards"][:100]) for r in runs_)


def screened_share(runs_: list[dict]) -> float:
    return statistics.mean(r["status"][-100:].count("screened") / 100 for r in runs_)


def median_update_stat(runs_: list[dict], key: str) -> float:
    """Median of an update stat over every update of every run."""
    return statistics.median(u["stats"][key] for r in runs_ for u in r["updates"])


# ---------------------------------------------------------------- the claims

@pytest.mark.parametrize("kind", LEARNERS)
def test_learners_find_better_functions_than_random_search(runs, kind):
    gain = top_gain(runs[kind], runs["random"])
    table = [(round(top_mean(m), 3), round(top_mean(r), 3)) for m, r in zip(runs[kind], runs["random"])]
    assert gain > MIN_TOP_GAIN, (f"{kind} vs random, mean of the {TOP} best distinct rewards after {BUDGET} "
                                 f"proposals per seed: {table}; mean gain {gain:.3f}")


@pytest.mark.parametrize("kind", ["ppo", "reinforce"])
def test_mean_reward_per_batch_rises_and_entropy_falls(runs, kind):
    rise = reward_rise(runs[kind])
    drop = entropy_drop(runs[kind])
    per_seed = [(round(quarter_change(r, "mean_reward"), 3), round(-quarter_change(r, "entropy"), 2))
                for r in runs[kind]]
    assert rise > MIN_REWARD_RISE, f"{kind}: mean reward per batch, last minus first quarter of updates {per_seed}"
    assert drop > MIN_ENTROPY_DROP, f"{kind}: (reward rise, entropy drop in nats) per seed {per_seed}"


def test_ppo_updates_stay_inside_the_trust_region(runs):
    # approx_kl: KL divergence (nats) of the policy after an update from the one before, along the batch;
    # clip_fraction: share of the batch whose probability ratio ended outside [1 - clip, 1 + clip]
    kl = median_update_stat(runs["ppo"], "approx_kl")
    clipped = median_update_stat(runs["ppo"], "clip_fraction")
    epochs = statistics.mean(u["stats"]["epochs"] for r in runs["ppo"] for u in r["updates"])
    assert kl < MAX_MEDIAN_KL and clipped < MAX_MEDIAN_CLIP_FRACTION, (
        f"median approx_kl {kl:.3f}, median clip_fraction {clipped:.2f} per update ({epochs:.2f} epochs per update)")


def test_evolution_mean_reward_rises(runs):
    rise = evolution_rise(runs["evolution"])
    gains = [round(statistics.mean(r["rewards"][-100:]) - statistics.mean(r["rewards"][:100]), 3)
             for r in runs["evolution"]]
    assert rise > MIN_EVOLUTION_RISE, f"mean reward of the last minus the first 100 proposals: {gains}"


@pytest.mark.parametrize("kind", LEARNERS)
def test_learners_do_not_collapse_onto_degenerate_functions(runs, kind):
    # Screened candidates (constant, linear, non-finite) earn the penalty 0 and the similarity gives linear functions
    # 0, so nothing pulls a learner towards them: they stay a small share instead of the collapse onto 3x, 1, -3 a
    # public replication of the paper reported.
    share = screened_share(runs[kind])
    shares = [r["status"][-100:].count("screened") / 100 for r in runs[kind]]
    assert share < MAX_SCREENED_SHARE, f"{kind}: screened share of the last 100 per seed: {shares}"
    for run in runs[kind]:
        best_index = run["rewards"].index(max(run["rewards"]))
        assert run["status"][best_index] != "screened"
