"""Is a candidate really better than a baseline? Paired comparisons over seeds.

A candidate and a baseline are each trained with the same seeds; run ``s`` of both shares its initialisation and data
order, so the comparison is made on the per-seed differences ``d_s = candidate_s - baseline_s`` (seeds present in
only one of the two, or whose score is None/NaN, are left out and counted in ``n_unpaired``).

Ties are exact: every difference is rounded to ``TIE_DECIMALS`` (9) decimals before anything else uses it. Scores are
accuracies, multiples of 1/(held-out examples), but their float differences are not: (n + 6)/5000 - n/5000 comes out
up to about 1e-16 apart for different n, which would turn equal gains into distinct ranks. 1e-9 is far below any
accuracy's resolution (1/10,000 for a CIFAR test set) and far above float subtraction error (~1e-16), so equal gains
tie and different ones stay apart. The rounded differences drive everything below (wins/ties/losses included).

For each (candidate, baseline) pair, ``compare`` reports:

- ``mean_diff`` with its 95% Student-t confidence interval: mean +- t(0.975, n - 1) * sd / sqrt(n) of the n
  differences. With the 6-10 seeds a study runs it covers the true mean of normal differences in 95% of studies
  (tests/test_stats.py measures it at n = 8); the percentile bootstrap used before ran narrow there (87-91% at n = 6-10,
  88% with heavy-tailed noise), so the "95% interval" shown was an 89% one. One difference gives no interval; equal
  differences give a zero-width one. A verdict also needs the Holm-corrected rank test: the interval only withholds.
- the two-sided Wilcoxon signed-rank test, computed here (``wilcoxon_test``), not by scipy, whose choice between exact
  and approximate p-values changes between versions. Zero differences are dropped (the "wilcox" zero method, as the
  sign test drops ties); tied |d| share their midrank. Under the null every one of the 2^n sign patterns is equally
  likely; T = the sum of the ranks of the positive differences, and p = P(|T - E[T]| >= |t - E[T]|), capped at 1. For
  n <= ``EXACT_MAX_N`` (100) p is exact: a dynamic programme over doubled midranks (integers) counts the sign patterns
  giving each T. Above that, the normal approximation with the tie-corrected variance sum(r^2)/4, no continuity
  correction. All-zero differences give p = 1 (no information either way).
- the paper's one-sided paired sign test: wins = seeds where the candidate scored higher, losses = lower, ties
  dropped; p = P(Binomial(wins + losses, 1/2) >= wins), the chance of that many wins or more if neither were better.
  p = 1 when every seed ties.

``compare_all`` applies Holm's step-down correction across all its comparisons (separately to the Wilcoxon p-values and
to the sign-test p-values) and decides each verdict:

- "better": Holm-adjusted two-sided Wilcoxon p < alpha AND the rank test favours the candidate (its positive rank
  sum above its mean) AND the t interval lies above 0;
- "worse":  Holm-adjusted two-sided Wilcoxon p < alpha AND the rank test favours the baseline AND the interval lies
  below 0;
- "no evidence" otherwise: a significant rank test whose interval for the mean still covers 0, or lies on the other
  side (many small gains against a few large losses: the ranks favour one, the mean the other), claims nothing.
  ``Comparison.reason`` says why.

With n non-zero differences the smallest two-sided Wilcoxon p is 2 / 2**n (every difference on one side), so 5 can
never reach 0.05 and Holm over m comparisons needs m * 2 / 2**n < alpha; ``seeds_needed`` says how many make a
verdict possible at all. Tied seeds (zero differences) are dropped, so they lower the effective n: 6 seeds with one
tie and five wins give p = 2 / 2**5 = 0.0625. Ties among the |d| do not lower the floor; they coarsen the
distribution, so results short of unanimous need more than that.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
TIE_DECIMALS = 9  # differences are rounded to 1e-9 so equal gains tie exactly (see the module docstring)
EXACT_MAX_N = 100  # the Wilcoxon p is exact up to this many non-zero differences, normal-approximated above


@dataclass
class Comparison:
    """One candidate against one baseline, paired by seed. Scores are whatever the children report (e.g. accuracy)."""

    candidate: str
    baseline: str
    n: int  # paired seeds used
    seeds: list[int]
    n_unpaired: int  # seeds with a score on one side only (or a missing score): left out
    candidate_mean: float | None
    baseline_mean: float | None
    mean_diff: float | None  # mean of candidate - baseline over paired seeds
    ci_low: float | None  # 95% (1 - alpha) Student-t interval of mean_diff (None for fewer than 2 seeds)
    ci_high: float | None
    wins: int  # seeds where the candidate scored higher
    ties: int
    losses: int
    wilcoxon_stat: float | None  # the smaller of the positive and negative (mid)rank sums
    wilcoxon_p: float  # two-sided, unadjusted
    sign_p: float  # one-sided (candidate better), unadjusted, exact binomial
    wilcoxon_p_holm: float  # Holm-adjusted across the family compared together (itself when compared alone)
    sign_p_holm: float
    verdict: str  # "better" | "no evidence" | "worse"
    alpha: float = ALPHA
    diffs: list[float] = field(default_factory=list)  # per paired seed, in seed order, rounded to TIE_DECIMALS
    reason: str = ""  # why the verdict is "no evidence" ("" for better / worse)

    def to_dict(self) -> dict:
        """JSON-safe dict (no NaN: undefined values are None)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Comparison":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def format_p(p: float | None, missing: str = "-") -> str:
    """A p-value as people read it: 3 decimals, scientific below 0.001; ``missing`` for None."""
    if p is None:
        return missing
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


# ---------------------------------------------------------------- the tests, one function each

def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """Student-t interval of the mean of ``diffs``: mean +- t((1 + level) / 2, n - 1) * sd / sqrt(n); (None, None)
    for fewer than two differences."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2:
        return None, None
    half = float(sps.t.ppf((1.0 + level) / 2.0, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    mean = float(d.mean())
    return mean - half, mean + half


def tie_round(diffs) -> np.ndarray:
    """Differences as float64 rounded to ``TIE_DECIMALS`` decimals, so that equal gains are equal floats; no -0.0."""
    return np.round(np.asarray(diffs, dtype=np.float64), TIE_DECIMALS) + 0.0


def signed_rank_null(doubled_ranks: Sequence[int]) -> list[int]:
    """Null distribution of the signed-rank statistic: ``counts[k]`` = how many of the 2^n sign patterns give a sum
    of positive doubled ranks equal to ``k`` (0 <= k <= sum). doubled_ranks: 2 x the midranks, integers. Exact
    (Python integers); each rank is added to half the patterns, one rank at a time."""
    counts = [1]
    for r in doubled_ranks:
        grown = counts + [0] * r
        for k, c in enumerate(counts):
            grown[k + r] += c
        counts = grown
    return counts


def wilcoxon_test(diffs: Sequence[float]) -> tuple[float | None, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences: ``(statistic, p)`` (see the module docstring).

    diffs: candidate - baseline per pair (rounded to ``TIE_DECIMALS`` here too). Zeros are dropped, tied |d| get their
    midrank. statistic: min(positive rank sum, negative rank sum), None when every difference is zero; p: two-sided
    P(|T - E[T]| >= |t - E[T]|), exact for up to ``EXACT_MAX_N`` non-zero differences.
    """
    d = tie_round(diffs)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return None, 1.0  # nothing but ties: no evidence either way
    doubled = np.rint(2 * sps.rankdata(np.abs(d), method="average")).astype(np.int64)  # midranks are k/2
    total = int(doubled.sum())  # 2 x (sum of ranks) = n (n + 1)
    t_pos = int(doubled[d > 0].sum())  # 2 x T
    stat = min(t_pos, total - t_pos) / 2.0
    # distance from the mean E[2T] = total / 2, doubled again so it stays an integer: |4T - total|
    observed = abs(2 * t_pos - total)
    if n <= EXACT_MAX_N:
        counts = signed_rank_null(doubled.tolist())
        extreme = sum(c for k, c in enumerate(counts) if abs(2 * k - total) >= observed)
        return stat, min(1.0, extreme / 2**n)
    # Var(T) = sum(r^2) / 4 with midranks r (tie-corrected); z = |T - E[T]| / sd
    sd = math.sqrt(float(np.sum(doubled.astype(np.float64) ** 2)) / 16.0)
    z = observed / 4.0 / sd
    return stat, min(1.0, math.erfc(z / math.sqrt(2.0)))


def sign_test(wins: int, losses: int) -> float:
    """The paper's one-sided paired sign test: ``P(Binomial(wins + losses, 1/2) >= wins)``, exact; ties excluded."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sps.binomtest(wins, n, 0.5, alternative="greater").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest (0-based) is multiplied by ``m - i``, capped at 1, and made non-decreasing;
    rejecting where the adjusted p < alpha controls the family-wise error rate at alpha.
    """
    p = [float(v) for v in pvalues]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def rank_direction(diffs: Sequence[float]) -> int:
    """Which side the signed-rank test favours: 1 the candidate (positive rank sum above its mean n (n + 1) / 4),
    -1 the baseline, 0 neither (no non-zero difference, or the sums balance)."""
    d = tie_round(diffs)
    d = d[d != 0]
    if d.size == 0:
        return 0
    doubled = np.rint(2 * sps.rankdata(np.abs(d), method="average")).astype(np.int64)
    return int(np.sign(2 * int(doubled[d > 0].sum()) - int(doubled.sum())))


def verdict(p_adjusted: float, ci_low: float | None, ci_high: float | None, alpha: float = ALPHA,
            direction: int | None = None) -> str:
    """The decision rule: significant adjusted Wilcoxon p AND a confidence interval on one side of zero AND (when
    ``direction`` is given, see ``rank_direction``) the rank test favouring that same side."""
    if ci_low is None or ci_high is None or not p_adjusted < alpha:
        return "no evidence"
    if ci_low > 0 and direction in (None, 1):
        return "better"
    if ci_high < 0 and direction in (None, -1):
        return "worse"
    return "no evidence"


def verdict_reason(comp: Comparison, n_comparisons: int = 1) -> str:
    """Why ``comp``'s verdict is "no evidence" (one clause), or "" for better / worse. Counts the effective n: the
    non-zero differences the rank test uses, not the seeds."""
    if comp.verdict != "no evidence":
        return ""
    if comp.n == 0:
        return "no seed scored on both sides"
    nonzero = comp.wins + comp.losses
    need = seeds_needed(n_comparisons, comp.alpha)
    family = f" over {n_comparisons} comparisons" if n_comparisons > 1 else ""
    ties = f" ({comp.ties} tied seed{'s' * (comp.ties != 1)} dropped)" if comp.ties else ""
    if nonzero < need:
        return (f"{nonzero} non-zero difference{'s' * (nonzero != 1)}{ties}: a verdict at alpha {comp.alpha:g}"
                f"{family} needs at least {need}")
    if not comp.wilcoxon_p_holm < comp.alpha:
        return f"Holm-adjusted Wilcoxon p {format_p(comp.wilcoxon_p_holm)} is not below {comp.alpha:g}{ties}"
    return interval_reason(comp.ci_low, comp.ci_high, rank_direction(comp.diffs))


INTERVAL_REASONS = ("the rank test favours", "the interval of the mean difference", "one paired seed")  # its clauses


def interval_reason(ci_low: float | None, ci_high: float | None, direction: int) -> str:
    """Why a significant rank test gave no verdict, from the interval (in the units it is shown in: a minimised
    metric's is flipped, ``significance.metric_comparisons``) and the side the ranks favour (``rank_direction``)."""
    if ci_low is None or ci_high is None:
        return "one paired seed gives no interval of the mean difference"
    favoured = {1: "the candidate", -1: "the baseline", 0: "neither"}[direction]
    if ci_low > 0 or ci_high < 0:
        side = "above" if ci_low > 0 else "below"
        return (f"the rank test favours {favoured} but the interval of the mean difference lies {side} 0 "
                f"({ci_low:+.4g}, {ci_high:+.4g}): they disagree")
    return f"the interval of the mean difference covers 0 ({ci_low:+.4g}, {ci_high:+.4g})"


def seeds_needed(n_comparisons: int = 1, alpha: float = ALPHA) -> int:
    """Fewest non-zero differences (seeds that do not tie) with which the Holm-adjusted two-sided Wilcoxon p can fall
    below ``alpha`` at all: the smallest n with ``n_comparisons * 2 / 2**n < alpha`` (every one on one side). Tied
    seeds are dropped, so seeds that tie need that many more."""
    n = 1
    while n_comparisons * 2.0 / 2.0**n >= alpha:
        n += 1
    return n


# ---------------------------------------------------------------- comparisons

def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def _pair(candidate_scores: Mapping[int, float | None], baseline_scores: Mapping[int, float | None]):
    seeds = sorted(s for s in set(candidate_scores) & set(baseline_scores)
                   if _finite(candidate_scores[s]) and _finite(baseline_scores[s]))
    unpaired = len(set(candidate_scores) | set(baseline_scores)) - len(seeds)
    c = np.array([float(candidate_scores[s]) for s in seeds], dtype=np.float64)
    b = np.array([float(baseline_scores[s]) for s in seeds], dtype=np.float64)
    return seeds, unpaired, c, b


def compare(candidate_scores: Mapping[int, float | None], baseline_scores: Mapping[int, float | None], *,
            candidate: str = "candidate", baseline: str = "baseline", alpha: float = ALPHA) -> Comparison:
    """Compare one candidate with one baseline, runs paired by seed.

    candidate_scores / baseline_scores: ``{seed: score}`` (higher is better; None or NaN = no score, left out).
    Returns a ``Comparison`` whose Holm-adjusted p-values equal the raw ones (a family of one) and whose verdict uses
    them; ``compare_all`` corrects across several comparisons. Differences are rounded to ``TIE_DECIMALS`` first.
    """
    seeds, unpaired, c, b = _pair(candidate_scores, baseline_scores)
    d = tie_round(c - b)  # equal gains must tie exactly: the rank test and the win/tie/loss counts depend on it
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    ties = len(seeds) - wins - losses
    stat, p_w = wilcoxon_test(d) if len(seeds) else (None, 1.0)
    p_s = sign_test(wins, losses)
    ci_low, ci_high = t_interval(d, level=1.0 - alpha)
    if len(seeds):
        means = (float(c.mean()), float(b.mean()), float(d.mean()))
    else:
        means = (None, None, None)
    comp = Comparison(
        candidate=candidate, baseline=baseline, n=len(seeds), seeds=[int(s) for s in seeds], n_unpaired=unpaired,
        candidate_mean=means[0], baseline_mean=means[1], mean_diff=means[2], ci_low=ci_low, ci_high=ci_high,
        wins=wins, ties=ties, losses=losses, wilcoxon_stat=stat, wilcoxon_p=p_w, sign_p=p_s,
        wilcoxon_p_holm=p_w, sign_p_holm=p_s, verdict="no evidence", alpha=alpha,
        diffs=[float(v) for v in d])
    _decide(comp, 1)
    return comp


def _decide(comp: Comparison, n_comparisons: int) -> None:
    comp.verdict = verdict(comp.wilcoxon_p_holm, comp.ci_low, comp.ci_high, comp.alpha, rank_direction(comp.diffs))
    comp.reason = verdict_reason(comp, n_comparisons)


def compare_all(scores: Mapping[str, Mapping[int, float | None]], candidates: Sequence[str],
                baselines: Sequence[str], *, alpha: float = ALPHA) -> list[Comparison]:
    """Every candidate against every baseline, Holm-corrected across all of them together.

    scores: ``{activation: {seed: score}}``; candidates / baselines: keys of ``scores`` (a name in both lists is not
    compared with itself). Returns the comparisons in candidate-major order, verdicts decided on the adjusted p.
    """
    missing = [name for name in [*candidates, *baselines] if name not in scores]
    if missing:
        raise KeyError(f"no scores for {', '.join(missing)}")
    out = [compare(scores[c], scores[b], candidate=c, baseline=b, alpha=alpha)
           for c in candidates for b in baselines if c != b]
    for comp, p_w, p_s in zip(out, holm([c.wilcoxon_p for c in out]), holm([c.sign_p for c in out])):
        comp.wilcoxon_p_holm, comp.sign_p_holm = p_w, p_s
        _decide(comp, len(out))
    return out


# ---------------------------------------------------------------- the paper's wins / ties / losses table

@dataclass
class WinsTable:
    """Counts of units (seeds, or models/tasks) where each candidate is better / equal / worse than each baseline.

    cells[candidate][baseline] = [wins, ties, losses]; ``unit`` names what was counted ("seed", "model", ...).
    """

    unit: str
    candidates: list[str]
    baselines: list[str]
    cells: dict[str, dict[str, list[int]]]
    tol: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "WinsTable":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def rows(self) -> list[dict[str, str]]:
        """One row per candidate: ``{"candidate": name, baseline: "w/t/l", ...}`` (the paper's "9/0/0" cells)."""
        return [{"candidate": c, **{b: "/".join(map(str, self.cells[c][b]))
                                    for b in self.baselines if b in self.cells[c]}}
                for c in self.candidates]


def wins_table(scores: Mapping[str, Mapping[Hashable, float | Sequence[float] | None]], candidates: Sequence[str],
               baselines: Sequence[str], *, unit: str = "seed", tol: float = 0.0) -> WinsTable:
    """The paper's summary: for each candidate and baseline, count units where the candidate is better/equal/worse.

    scores: ``{activation: {unit: score}}``, a unit being a seed or a model/task; a unit's score may be a list of runs,
    reduced to its median as the paper did. Units scored for both sides are counted; |difference| <= ``tol`` is a tie
    (the difference rounded to ``TIE_DECIMALS`` first, as in ``compare``, so float noise never breaks a tie).
    """
    def reduce(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            v = [float(x) for x in v if _finite(x)]
            return median(v) if v else None
        return float(v) if _finite(v) else None

    cells: dict[str, dict[str, list[int]]] = {}
    for c in candidates:
        cells[c] = {}
        for b in baselines:
            if c == b:
                continue
            counts = [0, 0, 0]
            for u in set(scores[c]) & set(scores[b]):
                sc, sb = reduce(scores[c][u]), reduce(scores[b][u])
                if sc is None or sb is None:
                    continue
                diff = round(sc - sb, TIE_DECIMALS)
                counts[0 if diff > tol else 2 if -diff > tol else 1] += 1
            cells[c][b] = counts
    return WinsTable(unit=unit, candidates=list(candidates), baselines=list(baselines), cells=cells, tol=tol)
