"""The shipped tabular benchmarks (docs/tables.md): the complete one-unit table at 150 steps, the full-fidelity table
of named functions at 500 steps, and what replaying them says about the proposers.

The proposer comparisons replay the cheap table in-process (``search.loop.local.search_table``) with default settings.
A search is judged by the table mean of the best function it trained (the mean over the table's seeds: closer to a
function's true accuracy than the single seed the search saw). Each claim is a mean over seeds with a margin far below
the measured value; the margins come from ``benchmarks/search_efficiency.py`` on seeds 100-159, which these tests do
not use (figures in docs/tables.md).
"""
import statistics

import torch
from conftest import REPO

from controller import ControllerSettings, make_proposer
from evaluator.table_file import load_table
from search.language.space import Space
from search.loop.local import search_table

CHEAP = REPO / "tables" / "mnist1d-150.json"
FULL = REPO / "tables" / "mnist1d-500.json"


def test_cheap_table_covers_the_one_unit_space():
    assert CHEAP.stat().st_size < 2_000_000
    table = load_table(CHEAP)
    assert table.header["space"]["core_units"] == 1 and len(table.header["space"]["unary"]) == 25
    assert table.header["child"]["task"] == "mnist1d" and table.header["child"]["steps"] == 150
    assert table.seeds >= 2 and table.header["commit"] and table.header["machine"] and table.header["date"]
    # 3,993 distinct one-unit functions pass the screen (docs/space.md): every one is a row, with every seed
    assert len(table.rows) == 3993
    assert all(len(r["accuracy"]) == table.seeds and "missing" not in r["statuses"] for r in table.rows)
    assert sum(r["status"] == "ok" for r in table.rows) > 2500  # a diverged child stays in the table as such
    assert table.rows[0]["mean"] > 0.9 and table.find("relu")["equals"] == "relu"


def test_full_table_has_the_paper_the_baselines_and_the_cheap_top_30():
    from evaluator.activations import BASELINES
    from search.analysis.table_build import PAPER_FUNCTIONS

    table = load_table(FULL)
    assert FULL.stat().st_size < 2_000_000
    assert table.header["child"]["steps"] == 500 and table.seeds == 5
    for f in (*PAPER_FUNCTIONS, *BASELINES):
        assert table.find(f) is not None, f
    for row in load_table(CHEAP).rows[:30]:
        assert table.by_fingerprint.get(row["fingerprint"]) is not None, row["text"]


def top_means(kind: str, seeds, children: int, top: int = 10) -> list[float]:
    """Per seed, the mean table mean of the ``top`` best distinct functions a search of ``kind`` trained within
    ``children`` children (what a search hands on to be re-trained), and the best one's."""
    torch.set_num_threads(1)
    table = load_table(CHEAP)
    space = Space(core_units=1)
    out = []
    for seed in seeds:
        run = search_table(make_proposer(ControllerSettings(kind=kind), space, seed), space, table, children,
                           seed=seed)
        means = sorted({table.by_fingerprint[fp]["mean"] for _, fp, _ in run["children"]}, reverse=True)
        out.append((statistics.fmean(means[:top]), means[0]))
    return out


def test_ppo_finds_better_functions_than_random_search_but_not_a_better_best():
    """PPO against random search on real rewards, default settings, 300 children, 20 seeds. PPO's 10 best functions
    are better than random search's: seeds 100-159 gave a mean gain of 0.0091 (sd of a 20-seed mean 0.0019); the test
    asks for 0.003. Its single best is not reliably better (mean gain 0.0043, sd of a 20-seed mean 0.0024: not
    asserted): see docs/tables.md for why."""
    ppo, rnd = top_means("ppo", range(20), 300), top_means("random", range(20), 300)
    gains = [p[0] - r[0] for p, r in zip(ppo, rnd)]
    assert statistics.fmean(gains) > 0.003, gains


def test_surrogate_finds_a_better_best_than_random_search_in_100_children():
    """The surrogate against random search, 100 children, 10 seeds: seeds 100-159 gave a mean gain of the best
    function's table mean of 0.0245 (sd of a 10-seed mean 0.0043); the test asks for 0.01."""
    sur, rnd = top_means("surrogate", range(10), 100), top_means("random", range(10), 100)
    gains = [s[1] - r[1] for s, r in zip(sur, rnd)]
    assert statistics.fmean(gains) > 0.01, gains
