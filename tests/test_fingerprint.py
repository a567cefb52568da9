"""Fingerprints: equal functions share one, different functions do not, at every beta training can reach."""
import itertools
import math

import numpy as np
import pytest
import torch

from search import Expression, Space
from search.language.identity import (
    BETA_START,
    INNER_BETAS,
    OUTER_REACH,
    PROBE_BETAS,
    PROBE_POINTS,
    beta_assignments,
    quantize,
)


def fp(text: str) -> str:
    return Expression.parse(text).fingerprint()


# ---------------------------------------------------------------- the probe betas


def test_probe_betas_cover_what_training_reaches():
    assert BETA_START == 1.0
    assert any(b > 1 for b in PROBE_BETAS) and any(0 < b < 1 for b in PROBE_BETAS) and any(b < 0 for b in PROBE_BETAS)
    # max / min branches that switch below beta = -0.8 or above 2 (issue 20 item 11) are probed too
    assert min(PROBE_BETAS) <= -2.0 and max(PROBE_BETAS) >= 2.5 and set(INNER_BETAS) < set(PROBE_BETAS)
    assert OUTER_REACH >= 8.0  # a child's pre-activations go beyond [-5, 5]


@pytest.mark.parametrize("n", range(6))
def test_beta_assignments_are_closed_under_renaming_and_dropping_betas(n):
    rows = beta_assignments(n)
    moves = [1, len(PROBE_BETAS), math.perm(len(PROBE_BETAS), 2), math.perm(len(INNER_BETAS), 3)]
    assert rows.shape == (sum(math.comb(n, k) * moves[k] for k in range(min(n, 3) + 1)), n)
    assert (rows[0] == BETA_START).all()  # the screen's finiteness checks use row 0
    as_set = {tuple(r) for r in rows}
    assert len(as_set) == len(rows)
    for perm in itertools.permutations(range(n)):  # renaming the betas gives the same set of rows
        assert {tuple(r[list(perm)]) for r in rows} == as_set
    for keep in range(n):  # dropping a beta (one the function ignores) gives the set for n - 1 betas
        assert {tuple(np.delete(r, keep)) for r in rows} == {tuple(r) for r in beta_assignments(n - 1)}
    m = min(n, 4)  # occurrences are independent parameters: rows give them different values
    assert any(len(set(r[:m])) == m for r in rows)


# ---------------------------------------------------------------- quantisation


def test_quantize_puts_round_off_on_the_same_code():
    below_one = np.nextafter(1.0, 0.0)
    assert np.array_equal(quantize(np.array([[1.0], [0.3]])), quantize(np.array([[below_one], [0.3]])))
    assert np.array_equal(quantize(np.array([[2.0], [1.0]])), quantize(np.array([[2.0], [below_one]])))
    # near a zero of the function relative rounding magnifies round-off; the absolute grid does not
    x = PROBE_POINTS[:, None]
    exact = x * (x + 1.0)
    noisy = exact + np.random.default_rng(0).uniform(-4e-15, 4e-15, exact.shape)
    assert np.array_equal(quantize(exact), quantize(noisy))
    # magnitudes anywhere in float64 quantise without overflow
    assert np.array_equal(quantize(exact * 1e300)[1:], quantize(exact)[1:])
    assert np.array_equal(quantize(exact * 1e-300)[1:], quantize(exact)[1:])


def test_quantize_keeps_differences_a_network_could_see():
    x = PROBE_POINTS[:, None]
    f = np.tanh(x)
    assert not np.array_equal(quantize(f), quantize(2 * f))  # the scale counts (row 0)
    assert not np.array_equal(quantize(f), quantize(f + 1e-6))
    assert not np.array_equal(quantize(f), quantize(np.where(x > 4.9, f + 1e-6, f)))  # at a few points only
    special = quantize(np.array([[np.nan, np.inf, -np.inf, 0.0], [1.0, 1.0, 1.0, 0.0]]))
    assert len({tuple(c) for c in special.T}) == 4  # NaN, +inf, -inf and an all-zero column differ


# ---------------------------------------------------------------- fingerprints


@pytest.mark.parametrize("a, b", [
    # agree on (0, 1] and differ for beta > 1 or beta < 0: one fingerprint before beta was probed there
    ("max(abs(x), beta * x)", "abs(x)"),
    ("max(beta * x, relu(x))", "relu(x)"),
    ("max(x + beta, exp(x))", "exp(x)"),
    # differ only for a beta below -0.8 (issue 20 item 11): one fingerprint while -0.61 was the lowest probe
    ("min(cosh(min(x + beta, beta)), atan(x))", "min(cosh(beta), atan(x))"),
    ("min(abs(x), tanh(x))", "min(tanh(x), max(cosh(x), sinh(x)) + beta)"),
    # differ only below x = -5.76, where sqrt's floor is above softplus and exp (issue 20 item 14)
    ("max(sqrt(x), softplus(x))", "softplus(x)"),
    ("max(sqrt(x), exp(x))", "exp(x)"),
    ("min(sqrt(x), softplus(x))", "sqrt(x)"),
    # two occurrences are two parameters: (b0 - b1) * x is not zero, max(b0 x, b1 x) is a PReLU
    ("beta * x - beta * x", "x - x"),
    ("max(beta * x, beta * x)", "beta * x"),
    ("mix(x + beta, beta)", "beta * x + beta"),
    # a scale is a different function
    ("x + x", "x"),
    ("sin(x) / beta", "beta * sin(x)"),
])
def test_different_functions_get_different_fingerprints(a, b):
    assert fp(a) != fp(b)


@pytest.mark.parametrize("group", [
    # equal up to float64 round-off, which lands near the functions' zeros
    ["x * (x + beta)", "x**2 + beta * x", "beta * x + x**2", "(x + beta) * x"],
    ["x + beta - relu(x)", "min0(x) + beta", "beta + min0(x)"],
    # bit-identical
    ["relu(x)", "max(x, 0)", "max(x, relu(x))", "max(relu(x), relu(x))"],
    ["x * sigmoid(beta * x)", "sigmoid(beta * x) * x", "sigmul(beta * x, x)"],
    # the same function with its betas numbered the other way round (trains the same: both start at 1)
    ["max(beta * x, x + beta)", "max(x + beta, beta * x)"],
    ["beta * x + (x + beta)", "x + beta + beta * x"],
    # a beta the function ignores
    ["sin(x)", "mix(sin(x), sin(x))", "max(sin(x), sin(x))", "x * sinc(x)"],
    ["x - x", "x + -x", "min(x, x) - max(x, x)"],
])
def test_equal_functions_built_differently_share_a_fingerprint(group):
    assert len({fp(text) for text in group}) == 1, {text: fp(text) for text in group}


def test_fingerprints_are_stable():
    # any change here re-keys every stored run's fingerprints: do it on purpose
    assert fp("relu(x)") == "0c943bf67ce6df70"  # version 3 (FINGERPRINT_VERSION)
    assert fp("x * sigmoid(beta * x)") == "c719c28152fe2172"


# ---------------------------------------------------------------- against numerical equality on a whole space

# Independent of the fingerprint: other points (also beyond [-5, 5], to OUTER_REACH), other betas (stratified over [-2.5, 3.5], so every beta takes
# values above 1, in (0, 1) and below 0), an explicit tolerance, and a search over renamings of the betas.
_RNG = np.random.default_rng(12345)
_XS = np.concatenate([PROBE_POINTS, _RNG.uniform(-5, 5, 300)])
_DRAWS = 10
_BETAS = np.concatenate([np.ones((1, 3)), np.stack(
    [_RNG.permutation(-2.5 + 6.0 * (np.arange(_DRAWS) + _RNG.uniform(0, 1, _DRAWS)) / _DRAWS) for _ in range(3)], 1)])
_XS = np.concatenate([_XS, _RNG.uniform(-OUTER_REACH, OUTER_REACH, 300)])
_CORE = np.abs(_XS) <= 5  # compared apart from the rest, as the fingerprint quantises them: exp(12) hides 1e-3
_TOL = 1e-9  # relative to a column's largest magnitude; no two functions of the space differ by 1e-12 .. 1e-6


def _evaluate(expr: Expression, betas: np.ndarray) -> np.ndarray:
    """Values (len(_XS), K) at beta vectors ``betas`` (K, n_betas), in float64."""
    k = len(betas)
    x = torch.tensor(np.repeat(_XS[:, None], k, 1))
    beta = torch.tensor(betas.T.copy()) if expr.n_betas else torch.ones(1, k, dtype=torch.float64)
    with torch.no_grad():
        return expr(x, beta).numpy()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal non-finite entries, finite entries within _TOL of the column's scale, on [-5, 5] and outside apart."""
    return _same_part(a[_CORE], b[_CORE]) and _same_part(a[~_CORE], b[~_CORE])


def _same_part(a: np.ndarray, b: np.ndarray) -> bool:
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not (np.array_equal(fa, fb) and np.array_equal(np.where(fa, 0, a), np.where(fb, 0, b), equal_nan=True)):
        return False
    a, b = np.where(fa, a, 0.0), np.where(fb, b, 0.0)
    scale = np.maximum(np.abs(a).max(0), np.abs(b).max(0))
    return bool((np.abs(a - b) <= _TOL * scale).all())


def _live_betas(expr: Expression) -> list[int]:
    base = _BETAS[:, :expr.n_betas]
    values = _evaluate(expr, base)
    live = []
    for i in range(expr.n_betas):
        moved = base.copy()
        moved[:, i] = _BETAS[::-1, (i + 1) % 3]
        if not _same(values, _evaluate(expr, moved)):
            live.append(i)
    return live


def _renamings(expr: Expression) -> tuple[int, list[np.ndarray]]:
    """How many betas the function uses, and its values with them fed the draws in every order (the others at 1)."""
    live = _live_betas(expr)
    out = []
    for order in itertools.permutations(range(len(live))):
        betas = np.ones((len(_BETAS), expr.n_betas))
        for slot, draw in zip(live, order):
            betas[:, slot] = _BETAS[:, draw]
        out.append(_evaluate(expr, betas))
    return len(live), out


def _summary(values: np.ndarray) -> float:
    """A number that equal functions share (to ~1e-15) whatever the order of their betas."""
    finite = np.isfinite(values)
    bounded = np.arctan(np.where(finite, values, 0.0))
    return float(np.where(finite, bounded, np.where(np.isnan(values), 7.0, 3.0 * np.sign(values))).mean())


def _numerically_equal_groups(space: Space) -> list[list[str]]:
    """Texts of the space's token strings, grouped by numerical equality (up to renaming the betas)."""
    items = []
    for text in dict.fromkeys(space.decode(t).text for t in space.enumerate()):
        used, renamings = _renamings(Expression.parse(text))
        items.append((used, float(np.mean([_summary(v) for v in renamings])), text, renamings))
    items.sort(key=lambda item: item[:2])
    parent = list(range(len(items)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, (n, s, _, renamings) in enumerate(items):
        j = i + 1
        while j < len(items) and items[j][0] == n and items[j][1] - s <= 1e-7:  # equal functions have equal summaries
            if root(i) != root(j) and any(_same(renamings[0], v) for v in items[j][3]):
                parent[root(j)] = root(i)
            j += 1
    groups: dict[int, list[str]] = {}
    for i, item in enumerate(items):
        groups.setdefault(root(i), []).append(item[2])
    return list(groups.values())


def test_fingerprints_are_numerical_equality_on_the_one_unit_space():
    space = Space(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: extra threads only wait for busy cores
    try:
        groups = _numerically_equal_groups(space)
    finally:
        torch.set_num_threads(threads)
    fingerprints = {text: fp(text) for group in groups for text in group}
    split = [group for group in groups if len({fingerprints[t] for t in group}) > 1]
    owners: dict[str, list[str]] = {}
    for group in groups:
        for f in {fingerprints[t] for t in group}:
            owners.setdefault(f, []).append(group[0])
    merged = [texts for texts in owners.values() if len(texts) > 1]
    assert split == [], f"equal functions with several fingerprints: {split}"
    assert merged == [], f"different functions sharing a fingerprint: {merged}"
    assert len(groups) == len(owners) == 4077
