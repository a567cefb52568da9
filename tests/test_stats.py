"""The significance statistics against exact enumerations, hand-worked examples and scipy where scipy is exact."""
from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from search.analysis.stats import (
    EXACT_MAX_N,
    Comparison,
    WinsTable,
    compare,
    compare_all,
    holm,
    rank_direction,
    seeds_needed,
    sign_test,
    signed_rank_null,
    t_interval,
    verdict,
    wilcoxon_test,
    wins_table,
)


def exact_signed_rank_p(diffs) -> float:
    """Two-sided p of the signed-rank test by enumerating every sign pattern of the (mid)ranks; zeros dropped.

    The differences are rounded to 1e-9 first, as ``compare`` does, so float noise does not break ties."""
    d = np.round(np.asarray(diffs, dtype=float), 9)
    d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    null = np.array([sum(r for r, positive in zip(ranks, signs) if positive)
                     for signs in itertools.product((False, True), repeat=len(d))])
    low, high = np.mean(null <= observed + 1e-9), np.mean(null >= observed - 1e-9)
    return min(1.0, 2 * min(low, high))


VECTORS = {
    "distinct": [0.8, -0.3, 1.1, 2.0, 0.05, -0.6, 1.4, 0.9],
    "tied |d|": [0.01, 0.02, -0.01, 0.03, 0.02, 0.01, -0.02, 0.04],
    "zeros": [0.01, 0.0, 0.02, 0.0, 0.03, -0.01, 0.02],
    "all positive": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
}


@pytest.mark.parametrize("name", VECTORS)
def test_wilcoxon_matches_exact_enumeration(name):
    d = VECTORS[name]
    stat, p = wilcoxon_test(d)
    assert p == pytest.approx(exact_signed_rank_p(d), rel=1e-12)
    r = np.round(d, 9)
    r = r[r != 0]
    ranks = sps.rankdata(np.abs(r))
    assert stat == pytest.approx(min(ranks[r > 0].sum(), ranks[r < 0].sum()))
    if name in ("distinct", "all positive"):  # no ties, no zeros: scipy's exact distribution, in every version
        assert p == pytest.approx(sps.wilcoxon(d, method="exact").pvalue, rel=1e-12)


def test_wilcoxon_by_hand():
    # n = 5, all positive: only 2 of the 32 sign patterns are that far from the mean (all +, all -)
    assert wilcoxon_test([0.1, 0.2, 0.3, 0.4, 0.5]) == (0.0, pytest.approx(2 / 32))
    assert wilcoxon_test([-0.01] * 5) == (0.0, pytest.approx(2 / 32))  # all tied, all negative: the same
    # a mixed case with tied |d| and a zero, enumerated here over the 2^6 sign patterns of its midranks:
    # |d| = 3, 1, 2, 2, 2, 5 -> ranks 5, 1, 3, 3, 3, 6 (the three 2s share rank 3); T+ = 5 + 3 + 3 + 6 = 17
    d = [3, -1, 2, 2, -2, 0, 5]
    ranks = [5, 1, 3, 3, 3, 6]
    mean = sum(ranks) / 2  # 10.5
    t = 5 + 3 + 3 + 6
    far = sum(abs(sum(r for r, s in zip(ranks, signs) if s) - mean) >= abs(t - mean)
              for signs in itertools.product((0, 1), repeat=6))
    # T+ <= 4: {} 0, {1} 1, {3} 3 (three ways), {1, 3} 4 (three ways) = 8 patterns; T+ >= 17: their mirrors
    assert far == 16
    assert wilcoxon_test(d) == (4.0, pytest.approx(far / 64, rel=1e-12))
    assert wilcoxon_test([0.0, 0.0]) == (None, 1.0)
    # the null distribution itself: ranks 1, 2, 3 -> sums 0, 1, 2, 3, 3, 4, 5, 6 (doubled: 0, 2, 4, 6, 6, 8, 10, 12)
    assert signed_rank_null([2, 4, 6]) == [1, 0, 1, 0, 1, 0, 2, 0, 1, 0, 1, 0, 1]


def accuracies(n_images, counts):
    """``{seed: count / n_images}``: accuracies as a child reports them."""
    return {s: c / n_images for s, c in enumerate(counts)}


def test_equal_gains_tie_exactly_whatever_the_baseline_scores():
    # 11 seeds of 5,000 test images: the candidate gets 6 more right on 9 seeds, 6 fewer on 2. Every |d| is 6/5000,
    # one tie group of 11, so T = 6 k with k ~ Binomial(11, 1/2): p = 2 (1 + 11 + 55) / 2^11 = 0.065 for any
    # baseline; unrounded float differences are unequal, and p ran from 0.03 to 0.27 over these 40 draws, with the
    # verdict "better" in 8 of them
    rng = np.random.default_rng(0)
    noisy = 0
    for _ in range(40):
        nb = rng.integers(4000, 4901, size=11)
        base = accuracies(5000, nb)
        cand = accuracies(5000, nb + np.array([6] * 9 + [-6] * 2))
        raw = {cand[s] - base[s] for s in range(9)}
        noisy += len(raw) > 1  # the floats really differ: the test exercises the rounding
        comp = compare(cand, base)
        assert (comp.wins, comp.ties, comp.losses) == (9, 0, 2)
        assert comp.wilcoxon_p == pytest.approx(2 * (1 + 11 + 55) / 2**11, rel=1e-12)
        assert comp.diffs == [0.0012] * 9 + [-0.0012] * 2
        assert comp.verdict == "no evidence"
    assert noisy > 20


def test_ten_wins_and_three_losses_of_equal_size_are_no_evidence():
    # 13 seeds of 10,000 test images (CIFAR's test set), the candidate 5 images ahead on 10 and behind on 3:
    # p = 2 (1 + 13 + 78 + 286) / 2^13 = 0.092 for any baseline; unrounded, about one draw in five said "better"
    rng = np.random.default_rng(1)
    noisy = 0
    for _ in range(40):
        nb = rng.integers(8000, 9801, size=13)
        cand, base = accuracies(10_000, nb + np.array([5] * 10 + [-5] * 3)), accuracies(10_000, nb)
        noisy += len({abs(cand[s] - base[s]) for s in range(13)}) > 1
        comp = compare(cand, base)
        assert comp.wilcoxon_p == pytest.approx(2 * (1 + 13 + 78 + 286) / 2**13, rel=1e-12)
        assert comp.verdict == "no evidence"
    assert noisy > 20


def test_wilcoxon_is_exact_up_to_the_limit_and_normal_beyond():
    rng = np.random.default_rng(3)
    d = rng.normal(0.3, 1.0, size=40)
    assert wilcoxon_test(d)[1] == pytest.approx(sps.wilcoxon(d, method="exact").pvalue, rel=1e-9)
    # above EXACT_MAX_N: the normal approximation with tied ranks' variance (scipy's "approx", no correction)
    d = np.round(rng.normal(0.3, 1.0, size=EXACT_MAX_N + 20), 1)  # many ties and a few zeros
    want = sps.wilcoxon(d, zero_method="wilcox", method="approx", correction=False).pvalue
    assert wilcoxon_test(d)[1] == pytest.approx(want, rel=1e-9)
    # and the exact p at the limit is close to that approximation
    d = rng.normal(0.2, 1.0, size=EXACT_MAX_N)
    assert wilcoxon_test(d)[1] == pytest.approx(sps.wilcoxon(d, method="approx").pvalue, abs=2e-3)


def test_wilcoxon_through_compare_pairs_by_seed():
    cand = {3: 0.91, 1: 0.93, 2: 0.90, 7: 0.95, 5: 0.92, 6: 0.94}
    base = {7: 0.90, 1: 0.92, 2: 0.91, 3: 0.89, 6: 0.90, 5: 0.88}
    d = [cand[s] - base[s] for s in sorted(cand)]
    comp = compare(cand, base)
    assert comp.seeds == sorted(cand)
    assert comp.diffs == pytest.approx(d)
    # 0.92 - 0.88 and 0.94 - 0.90 are both 0.04 but not as floats: they tie here
    assert comp.diffs[3] == comp.diffs[4] == 0.04
    assert comp.wilcoxon_p == pytest.approx(exact_signed_rank_p(d), rel=1e-12)
    assert comp.mean_diff == pytest.approx(np.mean(d))


def test_all_zero_differences_give_no_evidence_without_warnings():
    same = {s: 0.9 for s in range(8)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comp = compare(same, dict(same))
    assert (comp.wins, comp.ties, comp.losses) == (0, 8, 0)
    assert comp.wilcoxon_p == 1.0 and comp.sign_p == 1.0
    assert (comp.ci_low, comp.ci_high) == (0.0, 0.0)
    assert comp.verdict == "no evidence"


def test_sign_test_is_the_exact_binomial_tail():
    # 6 wins, 1 loss, 2 ties: ties dropped, P(Bin(7, 1/2) >= 6) = (C(7,6) + C(7,7)) / 2^7 = 8/128
    cand = {s: v for s, v in enumerate([0.92, 0.93, 0.91, 0.90, 0.88, 0.95, 0.94, 0.90, 0.93])}
    base = {s: v for s, v in enumerate([0.90, 0.91, 0.90, 0.90, 0.89, 0.93, 0.92, 0.90, 0.90])}
    comp = compare(cand, base)
    assert (comp.wins, comp.ties, comp.losses) == (6, 2, 1)
    assert comp.sign_p == pytest.approx(8 / 128, rel=1e-12)
    for wins, losses in [(9, 0), (7, 2), (5, 5), (0, 4), (12, 3), (1, 0)]:
        n = wins + losses
        by_hand = sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n
        assert sign_test(wins, losses) == pytest.approx(by_hand, rel=1e-12)
        assert sign_test(wins, losses) == pytest.approx(sps.binomtest(wins, n, 0.5, alternative="greater").pvalue)
    # the paper's Swish vs ReLU: better on 9 of 9 models
    assert sign_test(9, 0) == pytest.approx(1 / 512)
    assert sign_test(0, 0) == 1.0


def test_holm_hand_worked():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02]
    assert holm([]) == []


def test_compare_all_applies_holm_over_every_comparison():
    rng = np.random.default_rng(1)
    scores = {name: {s: 0.9 + rng.normal(0, 0.01) for s in range(8)} for name in ["a", "b", "relu", "gelu"]}
    comps = compare_all(scores, ["a", "b"], ["relu", "gelu"])
    assert [(c.candidate, c.baseline) for c in comps] == [("a", "relu"), ("a", "gelu"), ("b", "relu"), ("b", "gelu")]
    assert [c.wilcoxon_p_holm for c in comps] == pytest.approx(holm([c.wilcoxon_p for c in comps]))
    assert [c.sign_p_holm for c in comps] == pytest.approx(holm([c.sign_p for c in comps]))
    with pytest.raises(KeyError, match="swish"):
        compare_all(scores, ["a"], ["swish"])


def test_the_95_percent_interval_covers_the_true_mean_95_percent_of_the_time_at_eight_seeds():
    """The interval shown as "95%" is one at the seed counts studies use: the percentile bootstrap it replaced covered
    the true mean of 8 normal differences in about 88% of samples."""
    rng = np.random.default_rng(7)
    d = rng.normal(0.3, 1.0, size=8)
    low, high = t_interval(d)
    assert low < d.mean() < high
    assert t_interval([0.5]) == (None, None)  # one difference: no interval
    assert t_interval([0.002] * 5) == pytest.approx((0.002, 0.002))  # equal differences: zero width
    trials = 2000
    hits = sum(lo <= 0.3 <= hi for lo, hi in (t_interval(rng.normal(0.3, 1.0, size=8)) for _ in range(trials)))
    assert 0.93 <= hits / trials <= 0.97


def test_compare_ci_does_not_depend_on_comparison_order():
    rng = np.random.default_rng(2)
    scores = {name: {s: 0.9 + rng.normal(0, 0.01) for s in range(10)} for name in ["a", "b", "relu"]}
    one = {(c.candidate, c.baseline): (c.ci_low, c.ci_high) for c in compare_all(scores, ["a", "b"], ["relu"])}
    two = {(c.candidate, c.baseline): (c.ci_low, c.ci_high) for c in compare_all(scores, ["b", "a"], ["relu"])}
    assert one == two


def _paired(base, shift, noise, seed, n=10):
    rng = np.random.default_rng(seed)
    return {s: base[s] + shift + rng.normal(0, noise) for s in range(n)}


def test_verdicts_on_clearly_better_worse_and_noise():
    rng = np.random.default_rng(0)
    relu = {s: 0.90 + rng.normal(0, 0.01) for s in range(10)}
    scores = {
        "relu": relu,
        "better": _paired(relu, +0.01, 0.002, 1),
        "worse": _paired(relu, -0.05, 0.002, 2),
        "noise": _paired(relu, 0.0, 0.01, 3),
    }
    verdicts = {c.candidate: c.verdict for c in compare_all(scores, ["better", "worse", "noise"], ["relu"])}
    assert verdicts == {"better": "better", "worse": "worse", "noise": "no evidence"}


def test_too_few_seeds_cannot_give_a_verdict():
    # all-positive differences: the smallest possible Wilcoxon p is 2 / 2**n
    n = seeds_needed(1)
    assert compare({s: 1.0 + s for s in range(n - 1)}, {s: 0.0 for s in range(n - 1)}).verdict == "no evidence"
    assert compare({s: 1.0 + s for s in range(n)}, {s: 0.0 for s in range(n)}).verdict == "better"
    # the same 6 seeds against two baselines: Holm doubles the p-value and the claim goes away
    scores = {"c": {s: 1.0 + s for s in range(n)}, "relu": {s: 0.0 for s in range(n)},
              "gelu": {s: 0.1 for s in range(n)}}
    assert {c.verdict for c in compare_all(scores, ["c"], ["relu", "gelu"])} == {"no evidence"}
    k = seeds_needed(2)
    scores = {"c": {s: 1.0 + s for s in range(k)}, "relu": {s: 0.0 for s in range(k)},
              "gelu": {s: 0.1 for s in range(k)}}
    assert {c.verdict for c in compare_all(scores, ["c"], ["relu", "gelu"])} == {"better"}


@pytest.mark.parametrize("small, large, rank_side", [(0.001, -1.0, "the candidate"), (-0.001, 1.0, "the baseline")])
def test_rank_test_and_interval_on_opposite_sides_are_no_evidence(small, large, rank_side):
    """Issue 20 item 12: 21 seeds at +0.001 and 4 at -1.0: the signed-rank test favours the candidate (p = 0.046)
    while the interval is (-0.314, -0.005); the verdict was "worse". The two must agree (and mirrored)."""
    cand = {s: small for s in range(21)} | {s: large for s in range(21, 25)}
    comp = compare(cand, {s: 0.0 for s in range(25)})
    assert comp.wilcoxon_p == pytest.approx(0.0463, abs=1e-4)
    assert rank_direction(comp.diffs) == (1 if small > 0 else -1)
    assert (comp.ci_high < 0) if small > 0 else (comp.ci_low > 0)
    assert comp.verdict == "no evidence"
    assert comp.reason.startswith(f"the rank test favours {rank_side} but the interval") and "disagree" in comp.reason
    # the same p with the interval on the rank test's side is a verdict
    agree = compare({s: -small for s in range(21)} | {s: -large * 0.0001 for s in range(21, 25)},
                    {s: 0.0 for s in range(25)})
    assert agree.verdict == ("worse" if small > 0 else "better") and agree.reason == ""


def test_rank_direction_and_the_verdict_rule():
    assert rank_direction([0.1, 0.2, -0.05]) == 1 and rank_direction([-0.1, -0.2, 0.05]) == -1
    assert rank_direction([0.0, 0.0]) == 0 and rank_direction([0.1, -0.1]) == 0
    assert verdict(0.01, -0.3, -0.1) == "worse" and verdict(0.01, -0.3, -0.1, direction=1) == "no evidence"
    assert verdict(0.01, 0.1, 0.3, direction=1) == "better" and verdict(0.01, 0.1, 0.3, direction=-1) == "no evidence"


def test_ties_lower_the_effective_n_and_the_reason_says_so():
    """Issue 20 item 13: 6 seeds, 1 tied and 5 won: p = 2 / 2**5 = 0.0625, no evidence although 6 seeds would do;
    the reason counts the non-zero differences, not the seeds."""
    comp = compare({s: 0.0 if s == 0 else 0.01 * s for s in range(6)}, {s: 0.0 for s in range(6)})
    assert (comp.wins, comp.ties, comp.losses) == (5, 1, 0) and comp.wilcoxon_p == pytest.approx(0.0625)
    assert seeds_needed(1) == 6 and comp.verdict == "no evidence"
    assert comp.reason == "5 non-zero differences (1 tied seed dropped): a verdict at alpha 0.05 needs at least 6"
    # over two comparisons Holm needs 7; the reason names the family
    scores = {"c": {s: 1.0 + s for s in range(6)}, "relu": {s: 0.0 for s in range(6)},
              "gelu": {s: 0.1 for s in range(6)}}
    reasons = {c.reason for c in compare_all(scores, ["c"], ["relu", "gelu"])}
    assert reasons == {"6 non-zero differences: a verdict at alpha 0.05 over 2 comparisons needs at least 7"}
    # a significant rank test whose interval covers 0, and a p above alpha with enough differences, say so too
    loose = compare({s: 0.01 * (s + 1) * (-1) ** (s % 3 == 0) for s in range(12)}, {s: 0.0 for s in range(12)})
    assert loose.verdict == "no evidence" and loose.reason.startswith("Holm-adjusted Wilcoxon p ")
    assert Comparison.from_dict(json.loads(json.dumps(comp.to_dict()))).reason == comp.reason


def test_significant_ranks_but_interval_across_zero_is_no_evidence():
    # 13 small wins and one huge loss: the signed-rank test says "better", the mean says "worse": no claim
    cand = {s: 0.01 * (s + 1) for s in range(14)}
    cand[13] = -5.0
    base = {s: 0.0 for s in range(14)}
    comp = compare(cand, base)
    assert comp.wilcoxon_p < 0.05
    assert comp.ci_low < 0 < comp.ci_high or comp.ci_high < 0
    assert comp.verdict == "no evidence"


def test_unpaired_and_missing_scores_are_left_out():
    cand = {0: 0.9, 1: 0.91, 2: None, 3: float("nan"), 4: 0.92}
    base = {0: 0.89, 1: 0.9, 2: 0.9, 3: 0.9, 5: 0.9}
    comp = compare(cand, base)
    assert comp.seeds == [0, 1] and comp.n == 2
    assert comp.n_unpaired == 4  # seeds 2, 3 (missing score), 4 and 5 (one side only)
    empty = compare({0: 0.9}, {1: 0.9})
    assert empty.n == 0 and empty.mean_diff is None and empty.verdict == "no evidence"


def test_comparison_round_trips_through_json():
    comp = compare({s: 0.9 + 0.01 * s for s in range(6)}, {s: 0.9 for s in range(6)}, candidate="c", baseline="relu")
    again = Comparison.from_dict(json.loads(json.dumps(comp.to_dict(), allow_nan=False)))
    assert again == comp


def test_wins_table_in_the_papers_style():
    # per model: several runs each, reduced to the median as the paper did
    scores = {
        "swish": {"resnet": [94.5, 94.4, 94.6], "wrn": [95.5], "densenet": [94.9, 95.0, 94.8]},
        "relu": {"resnet": [93.8, 93.9, 93.7], "wrn": [95.3], "densenet": [94.9]},
        "gelu": {"resnet": [94.6], "wrn": [95.5], "densenet": [95.2]},
    }
    table = wins_table(scores, ["swish"], ["relu", "gelu"], unit="model")
    assert table.cells == {"swish": {"relu": [2, 1, 0], "gelu": [0, 1, 2]}}
    assert table.rows() == [{"candidate": "swish", "relu": "2/1/0", "gelu": "0/1/2"}]
    assert WinsTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    # a tolerance turns near-equal medians into ties
    assert wins_table(scores, ["swish"], ["gelu"], unit="model", tol=0.15).cells["swish"]["gelu"] == [0, 2, 1]
    # per seed, from the same {seed: score} dicts compare() takes
    per_seed = wins_table({"c": {0: 0.9, 1: 0.8, 2: 0.7}, "relu": {0: 0.85, 1: 0.8, 2: 0.75, 3: 0.9}}, ["c"], ["relu"])
    assert per_seed.cells["c"]["relu"] == [1, 1, 1] and per_seed.unit == "seed"


def test_a_minimised_metrics_reason_quotes_the_interval_it_is_shown_beside():
    """A minimised metric's comparisons are shown in its units (candidate minus baseline, lower better): the mean
    and interval flip, and so must the interval quoted in a "no evidence" reason (it quoted the reward's, the
    mirror image, beside the metric's own)."""
    from search.analysis.significance import metric_comparisons
    from search.loop.config import RewardSettings

    losses = {s: -0.001 for s in range(21)} | {s: 1.0 for s in range(21, 25)}  # lower loss on 21 seeds, far higher on 4
    comp = compare({s: -v for s, v in losses.items()}, {s: 0.0 for s in range(25)})  # rewards: minus the loss
    assert comp.verdict == "no evidence" and "disagree" in comp.reason
    (shown,) = metric_comparisons([comp], RewardSettings(metric="val_loss", minimize=True))
    assert shown["ci_low"] > 0 and shown["ci_high"] > 0  # the loss's difference: higher than the baseline's
    assert f"({shown['ci_low']:+.4g}, {shown['ci_high']:+.4g})" in shown["reason"]
    assert "lies above 0" in shown["reason"] and "favours the candidate" in shown["reason"]
