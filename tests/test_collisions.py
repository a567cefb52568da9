"""Collision hunt: texts that share a fingerprint compute the same function, judged by an evaluation of their own.

The evaluation here is independent of search.language.identity and of the operators' torch code: numpy in float64,
from each operator's definition (docs/operators.md), at random x on [-8, 8] (beyond the fingerprint's [-5, 5]) and
random betas on [-2.5, 2.5] (each occurrence its own draw), with a search over renamings of the betas that a
function uses (the fingerprint ignores their order and the betas a function ignores). A random sample of the
two-unit space is hunted here (``HUNT`` texts: about 10 s on one core); a 20,000-text hunt (seed 7) found one residual
class, kept as a strict xfail below.
"""
import itertools
import random

import numpy as np
import pytest
from scipy.special import erf

from search import Expression
from search.language.space import Space

EPS = 1e-5
_RNG = np.random.default_rng(20)
XS = np.concatenate([[-8.0, -6.0, -2.0, 0.0, 2.0, 6.0, 8.0], _RNG.uniform(-8, 8, 200)])
DRAWS = 8
BETAS = np.concatenate([np.ones((1, 12)), _RNG.uniform(-2.5, 2.5, (DRAWS, 12))])  # row 0: where training starts
RTOL, ATOL = 1e-6, 1e-9
HUNT = 6000  # distinct texts of the random two-unit sample (the issue's hunt had 20,798; see hunt() below)


def _sigmoid(v):
    return np.exp(-np.logaddexp(0.0, -v))


_UNARY = {
    "neg": lambda v, b: -v, "abs": lambda v, b: np.abs(v), "square": lambda v, b: v * v, "cube": lambda v, b: v ** 3,
    "sqrt": lambda v, b: np.sqrt(np.maximum(v, EPS)), "scale": lambda v, b: b * v, "shift": lambda v, b: v + b,
    "log_abs": lambda v, b: np.log(np.abs(v) + EPS), "exp": lambda v, b: np.exp(v), "sin": lambda v, b: np.sin(v),
    "cos": lambda v, b: np.cos(v), "sinh": lambda v, b: np.sinh(v), "cosh": lambda v, b: np.cosh(v),
    "tanh": lambda v, b: np.tanh(v), "asinh": lambda v, b: np.arcsinh(v), "atan": lambda v, b: np.arctan(v),
    "sinc": lambda v, b: np.sinc(v / np.pi), "relu": lambda v, b: np.maximum(v, 0.0),
    "min0": lambda v, b: np.minimum(v, 0.0), "sigmoid": lambda v, b: _sigmoid(v),
    "softplus": lambda v, b: np.logaddexp(0.0, v), "gauss": lambda v, b: np.exp(-v * v), "erf": lambda v, b: erf(v),
    "beta": lambda v, b: b + 0.0 * v,
}
_BINARY = {
    "add": lambda u, v, b: u + v, "mul": lambda u, v, b: u * v, "sub": lambda u, v, b: u - v,
    "div": lambda u, v, b: u / (v + EPS), "max": lambda u, v, b: np.maximum(u, v),
    "min": lambda u, v, b: np.minimum(u, v),
    "sigmul": lambda u, v, b: _sigmoid(u) * v, "gauss_diff": lambda u, v, b: np.exp(-b * (u - v) ** 2),
    "laplace_diff": lambda u, v, b: np.exp(-b * np.abs(u - v)), "mix": lambda u, v, b: b * u + (1 - b) * v,
}
_WITH_BETA = {"scale", "shift", "beta", "gauss_diff", "laplace_diff", "mix"}


def evaluate(expr: Expression, betas: np.ndarray) -> np.ndarray:
    """Values (len(XS), K) of ``expr`` at beta vectors ``betas`` (K, >= n_betas): occurrences numbered in pre-order
    (this file's own order; renamings are searched anyway)."""
    x = np.repeat(XS[:, None], len(betas), 1)
    slot = 0

    def visit(node):
        nonlocal slot
        if node.op is None:
            return x
        b = None
        if node.op.name in _WITH_BETA:
            b, slot = betas[:, slot][None, :], slot + 1
        args = [visit(child) for child in node.children]
        if len(args) == 1:
            return _UNARY[node.op.name](args[0], b)
        return _BINARY[node.op.name](args[0], args[1], b)

    with np.errstate(all="ignore"):
        return visit(expr.root)


def agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Non-finite where the other is (the same kind), finite values within RTOL relative (ATOL near zero)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(np.where(fa, 0.0, a), np.where(fb, 0.0, b), equal_nan=True):
        return False
    a, b = a[fa], b[fb]
    return bool((np.abs(a - b) <= RTOL * np.maximum(np.abs(a), np.abs(b)) + ATOL).all())


def live_betas(expr: Expression) -> list[int]:
    """The beta occurrences the function uses: moving one alone changes its values."""
    base = evaluate(expr, BETAS)
    live = []
    for i in range(expr.n_betas):
        moved = BETAS.copy()
        moved[:, i] = BETAS[::-1, (i + 1) % BETAS.shape[1]]
        if not agree(base, evaluate(expr, moved)):
            live.append(i)
    return live


def same_function(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` compute the same values at XS and every draw of BETAS, for some renaming of the betas
    ``b`` uses onto those ``a`` uses (the others stay at the draws they get)."""
    ea, eb = Expression.parse(a), Expression.parse(b)
    la, lb = live_betas(ea), live_betas(eb)
    if len(la) != len(lb):
        return False
    va = evaluate(ea, BETAS)
    for order in itertools.permutations(la):
        betas = BETAS.copy()
        for slot, source in zip(lb, order):
            betas[:, slot] = BETAS[:, source]
        if agree(va, evaluate(eb, betas)):
            return True
    return False


def sample_texts(space: Space, n: int, seed: int) -> list[str]:
    """``n`` distinct canonical texts of random token strings of ``space``."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < n:
        texts[space.decode([rng.choice(c) for c in space.choices]).text] = None
    return list(texts)


def hunt(texts: list[str]) -> list[tuple[str, str]]:
    """Pairs (first text of a fingerprint, another text of it) that are different functions."""
    groups: dict[str, list[str]] = {}
    for text in texts:
        groups.setdefault(Expression.parse(text).fingerprint(), []).append(text)
    return [(group[0], other) for group in groups.values() for other in group[1:] if not same_function(group[0], other)]


# ---------------------------------------------------------------- the independent evaluation itself


def test_the_independent_evaluation_computes_the_operators():
    e = Expression.parse("mix(sinc(x), softplus(x)) + laplace_diff(x, sqrt(x))")
    x, b0, b1 = XS[:, None], BETAS[None, :, 0], BETAS[None, :, 1]
    softplus = np.log1p(np.exp(x))
    expected = b0 * np.sinc(x / np.pi) + (1 - b0) * softplus \
        + np.exp(-b1 * np.abs(x - np.sqrt(np.maximum(x, EPS))))
    assert agree(evaluate(e, BETAS), expected)
    assert same_function("max(beta * x, x + beta)", "max(x + beta, beta * x)")  # renamed betas
    assert same_function("sin(x)", "mix(sin(x), sin(x))")  # a beta the function ignores
    assert not same_function("x + beta", "beta * x")
    assert not same_function("softplus(x)", "max(sqrt(x), softplus(x))")  # below x = -5.76 only


# ---------------------------------------------------------------- regression cases and the hunt


@pytest.mark.parametrize("a, b", [
    # issue 20 item 11: one fingerprint when -0.61 was the lowest probe beta (version 2)
    ("min(cosh(min(x + beta, beta)), atan(x))", "min(cosh(beta), atan(x))"),
    ("min(abs(x), tanh(x))", "min(tanh(x), max(cosh(x), sinh(x)) + beta)"),
    # found by this hunt with version 3's first draft: a beta near 0 (log of sigmoid / beta), and values hidden
    # under the scale of the largest (1e32 at x = 5 against 2.7 at 0) before the points were quantised in blocks
    ("min(relu(max(asinh(x), exp(x))), exp(x))", "max(log_abs(sigmoid(x) / beta), exp(x))"),
    ("exp(max(cosh(x), softplus(x))) + max(cosh(x), softplus(x))**2", "exp(cosh(x) - gauss(x)) + min0(x)"),
    ("max(max(x**2, cos(x)) + beta, sinh(max(x**2, cos(x))))", "sin(x) + cosh(max(x**2, abs(x)))"),
    ("max(cosh(max(cosh(x), sigmoid(x))), sqrt(x))", "max(-x, sinh(max(sin(x), cosh(x))))"),
])
def test_issue_pairs_are_different_functions_with_different_fingerprints(a, b):
    assert not same_function(a, b)
    assert Expression.parse(a).fingerprint() != Expression.parse(b).fingerprint()


@pytest.mark.xfail(strict=True, reason="known residual: max(b0, b1) of two betas probes like one beta (the "
                   "fingerprint digests the set of its columns); found by a 20,000-text hunt, seed 7")
def test_known_residual_two_betas_through_a_max_probe_like_one():
    a, b = "max(x + beta, abs(max(softplus(x), x + beta)))", "max(x + beta, softplus(x))"
    assert Expression.parse(a).fingerprint() != Expression.parse(b).fingerprint()


def test_no_two_different_functions_of_a_random_two_unit_sample_share_a_fingerprint():
    texts = sample_texts(Space(2), HUNT, seed=2026)
    assert hunt(texts) == []
