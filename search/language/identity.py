"""The identity of a function: where it is probed, how its values are rounded, its fingerprint and its screen.

Two expressions are the same function when they compute the same values on ``PROBE_POINTS`` and ``OUTER_POINTS`` at
every beta vector of ``beta_assignments``; ``fingerprint`` digests those values, ``screen`` is the cheap verdict before
any child trains. Both take anything that evaluates like an ``Expression`` (``expr(x, beta)``, ``expr.n_betas``,
``expr.text``) and are memoised per process by the expression's canonical text (the text determines the function), up
to ``MEMO_LIMIT`` texts each: a function is fingerprinted and screened once, whoever asks.
"""
from __future__ import annotations

import hashlib
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from search.language.expression import Expression

MEMO_LIMIT = 1 << 18  # texts whose fingerprint (or verdict) is remembered: more than any enumerable space has


# ---------------------------------------------------------------- probe points and betas

def _probe_points() -> np.ndarray:
    # Act-Bench style: N(0, 1) draws clipped to [-5, 5] with a fixed seed, plus an even grid covering the whole range.
    rng = np.random.default_rng(20171016)
    normal = np.clip(rng.standard_normal(1000), -5, 5)
    return np.concatenate([normal, np.linspace(-5, 5, 101)])


PROBE_POINTS = _probe_points()
# Where the fingerprint also looks beyond [-5, 5]: a child's pre-activations reach there, and functions differ there
# only (``max(sqrt(x), softplus(x))`` is softplus above -5.76): 50 points on each side, out to OUTER_REACH.
OUTER_REACH = 12.0
OUTER_POINTS = np.concatenate([-np.linspace(5.0, OUTER_REACH, 51)[:0:-1], np.linspace(5.0, OUTER_REACH, 51)[1:]])
# The fingerprint quantises its points in blocks, each on its own scale: x < 0 and x >= 0, each cut at |x| = 1, 2.5
# and 5. One scale for all would let the largest values hide the rest (``exp(cosh(x))`` is 1e32 at 5 and 2.7 at 0).
BLOCK_EDGES = (1.0, 2.5, 5.0)
BETA_START = 1.0  # every beta's initial value (search.language.kernel): training starts here
# Values a trained beta may move to: above 1, between 0 and 1, negative, further out on both sides (a max or min
# whose branches switch below beta = -0.8 or above 2 is another function there) and near 0 (``x / beta``). Irregular on purpose, so that no
# simple map (1 - b, -b, 1 / b, b * b, sums) takes one set of probe betas onto another and makes two different
# functions agree. The first three are the inner ones: three betas at once move only to those (beta_assignments).
PROBE_BETAS = (1.83, 0.37, -0.61, -2.0, 2.5, 0.11)
INNER_BETAS = PROBE_BETAS[:3]
# Quantisation grid of the fingerprint: 2**24 steps per column scale, float32's resolution (what a child computes in).
GRID = 2.0 ** 24
# Which fingerprint a run's store holds: 1 probed betas 1.0 and 0.6 only (before 2026-11-30); 2 probed betas 1.83,
# 0.37 and -0.61 on [-5, 5] (until 2026-12-04); 3 is this one. A run keeps the version it was made with
# (search.loop.rundir), so fingerprints of two schemes never meet in one run; a table records it (evaluator.table_file).
FINGERPRINT_VERSION = 3
# codes of non-finite values (far outside [-GRID, GRID]) and of the scale of a column without nonzero finite values
_NAN, _POSINF, _NEGINF, _ZERO = 1 << 40, 1 << 41, -(1 << 41), -(1 << 60)


@lru_cache(maxsize=None)
def beta_assignments(n_betas: int) -> np.ndarray:
    """The beta vectors an expression with ``n_betas`` occurrences is probed at: float64 array (K, n_betas).

    Row 0 has every beta at ``BETA_START``. The others move one or two betas to ``PROBE_BETAS``, or three to
    ``INNER_BETAS``, each value used at most once in a row and the rest left at ``BETA_START``: every way of doing so
    (1 row for 0 betas, 7 for 1, 43 for 2, 115 for 3, 607 for 6). Occurrences are independent parameters, so they get
    different values in the same row (``beta*x - beta*x`` is not ``x - x``). The set is closed under permuting the
    betas, and its rows restricted to any subset of the betas are exactly the set for that many betas; so as a *set*
    of probe results it is the same for ``f(b0, b1)`` and ``f(b1, b0)`` (which train identically: every beta starts
    at 1), and for a function and the same function with an extra beta it ignores (``mix(sin(x), sin(x))`` and
    ``sin(x)``). ``fingerprint`` and ``screen`` rely on both. The price of a small set: a row moves at most three
    betas away from 1 (at most two outside ``INNER_BETAS``), so with four or more betas, a difference that shows only when
    four have moved at once goes unseen.
    """
    rows = [[BETA_START] * n_betas]
    for k in range(1, min(n_betas, 3) + 1):
        for slots in itertools.combinations(range(n_betas), k):
            for values in itertools.permutations(PROBE_BETAS if k <= 2 else INNER_BETAS, k):
                row = [BETA_START] * n_betas
                for slot, value in zip(slots, values):
                    row[slot] = value
                rows.append(row)
    out = np.array(rows, dtype=np.float64).reshape(len(rows), n_betas)
    out.flags.writeable = False
    return out


def quantize(values: np.ndarray) -> np.ndarray:
    """Integer codes of probe values: float array (N, K), one column per beta vector -> int64 array (N + 1, K).

    Row 0 codes each column's scale ``s`` (its largest finite magnitude) as ``round(log2(s) * GRID)``: relative steps
    of 4e-8, continuous across powers of two (a mantissa/exponent split puts 1.0 and the float just below it ~2**24
    codes apart; here both are code 0). Rows 1.. round the values on an absolute grid of ``s / GRID``, so equal
    functions computed by different formulas agree: float64 round-off is ~1e-16 of ``s`` everywhere, also near the
    function's zeros where relative rounding would magnify it, i.e. ~2e-9 of a step, while any difference a float32
    network could see is a step or more. The extreme value maps to exactly +/-GRID, and dyadic fractions of ``s``
    (0, s/2, ...) to grid centres, the farthest from a boundary. NaN and +/-infinity get codes of their own; a column
    without a nonzero finite value has scale code ``_ZERO`` and zero codes.

    Residual risk (any grid has boundaries): two equal functions split when a value whose two round-offs differ by
    ``d`` lies within ``d`` of a half-step boundary: probability ~``2 d GRID / s``, about 1e-8 per value, so 1e-5 to
    1e-4 for a fingerprint's 10^3 to 10^4 values, and only for functions computed by different formulas
    (bit-identical computations, most duplicates, never split). Measured: noise of 1e-15 of the scale added to all
    22 million probe values of the one-unit space changes no code. Two different functions merge only if they differ
    by less than about a step (6e-8 of the scale) at every probe point and beta vector: below float32 resolution,
    where no child can tell them apart. A function that is zero in exact arithmetic but not in float64 (round-off
    noise only; the screen rejects it as constant) gets a fingerprint of that noise.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    clean = np.where(finite, v, 0.0)
    scale = np.abs(clean).max(axis=0, keepdims=True)
    nonzero = scale > 0
    scale_code = np.where(nonzero, np.rint(np.log2(np.where(nonzero, scale, 1.0)) * GRID), _ZERO).astype(np.int64)
    # dividing by the scale first keeps codes in [-GRID, GRID] for any magnitude (no overflow, no subnormal steps)
    codes = np.rint(np.divide(clean, scale, out=np.zeros_like(clean), where=nonzero) * GRID).astype(np.int64)
    codes = np.where(np.isnan(v), _NAN, codes)
    codes = np.where(np.isposinf(v), _POSINF, codes)
    codes = np.where(np.isneginf(v), _NEGINF, codes)
    return np.concatenate([scale_code, codes])


@contextmanager
def one_thread():
    """Run torch ops on one intra-op thread inside the block (restored after; a no-op when it already is one).

    Probe tensors are small (1,101 x K values): extra threads cannot speed them up, and on busy cores every parallel
    op waits milliseconds for them (``actsearch space``: 46-130 s instead of 8 s on 2 busy cores). Search sessions
    already run on one thread (search.loop.driver)."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


# ---------------------------------------------------------------- fingerprint and screen

@dataclass(frozen=True)
class Verdict:
    """Outcome of the pre-training screen: ``ok`` or the reason the candidate is not worth a child."""

    ok: bool
    reason: str = "ok"


class Memo(dict):
    """A dict that forgets its oldest entries beyond ``MEMO_LIMIT``."""

    def put(self, key, value):
        if len(self) >= MEMO_LIMIT:
            del self[next(iter(self))]
        self[key] = value
        return value


_FINGERPRINTS: Memo = Memo()
_VERDICTS: Memo = Memo()


def probe(expr: Expression, dtype: torch.dtype, grad: bool = False,
          points: np.ndarray = PROBE_POINTS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, beta, y)`` on ``points`` at every beta vector of ``beta_assignments``, all in one call.

    x: (N, K), column j the points; beta: (max(n_betas, 1), K), column j the j-th beta vector (each column is a
    channel with its own betas); y: (N, K). grad: x and beta require grad.
    """
    betas = beta_assignments(expr.n_betas)
    x = torch.tensor(points, dtype=dtype)[:, None].repeat(1, len(betas))
    beta = torch.tensor(betas.T, dtype=dtype) if expr.n_betas else torch.ones(1, len(betas), dtype=dtype)
    if grad:
        x.requires_grad_(True)
        beta.requires_grad_(True)
    return x, beta, expr(x, beta)


def _blocks() -> tuple[np.ndarray, np.ndarray]:
    """The fingerprint's points, block by block (``BLOCK_EDGES``), and where each block after the first begins."""
    points = np.concatenate([PROBE_POINTS, OUTER_POINTS])
    block = np.searchsorted(BLOCK_EDGES, np.abs(points), side="left") * 2 + (points < 0)
    order = np.argsort(block, kind="stable")
    return points[order], np.flatnonzero(np.diff(block[order])) + 1


_FINGERPRINT_POINTS, _BLOCK_STARTS = _blocks()


def fingerprint(expr: Expression) -> str:
    """16 hex digits, the same for functions that compute the same values on the probe points at every probe beta.

    Values are computed in float64 on ``PROBE_POINTS`` and ``OUTER_POINTS`` (to +/-``OUTER_REACH``) at each beta
    vector of ``beta_assignments`` and rounded by ``quantize``, each block of points (``BLOCK_EDGES``) on its own
    scale; the digest is
    of the *set* of rounded columns, so renumbering the betas or adding one the function ignores does not change it
    (see ``beta_assignments``). Two different functions could also share it if one's columns were the other's
    reordered by some map of the irregular ``PROBE_BETAS`` onto each other, or if they differed only where no probe
    looks; tests/test_fingerprint.py checks fingerprints against numerical equality at random betas on the one-unit
    space, and tests/test_collisions.py hunts collisions in a random two-unit sample.
    """
    known = _FINGERPRINTS.get(expr.text)
    if known is not None:
        return known
    with torch.no_grad(), one_thread():
        y = probe(expr, torch.float64, points=_FINGERPRINT_POINTS)[2].numpy()
    codes = np.concatenate([quantize(block) for block in np.split(y, _BLOCK_STARTS)])
    columns = sorted({hashlib.sha1(row.tobytes()).digest() for row in np.ascontiguousarray(codes.T)})
    return _FINGERPRINTS.put(expr.text, hashlib.sha1(b"".join(columns)).hexdigest()[:16])


def screen(expr: Expression, reject_linear: bool = True) -> Verdict:
    """A cheap verdict before any child trains, in float32 as a child computes.

    Rejects a function with a non-finite output, or gradient for x or a beta, on the probe points with every beta at
    ``BETA_START`` (where training starts); then one whose output is constant in x, or (``reject_linear``) linear
    ``a*x + b``, at *every* probed beta vector (``beta_assignments``): betas train, so ``mix(x, relu(x))``, which is
    ``x`` at beta = 1, is a PReLU once beta moves. Non-finite values at the other beta vectors do not reject
    (training may never take a beta there, and a child that does diverges and is scored as such), but such a vector
    cannot show that the function is non-degenerate either.
    """
    key = (expr.text, bool(reject_linear))
    known = _VERDICTS.get(key)
    if known is not None:
        return known
    with one_thread():
        return _VERDICTS.put(key, _screen(expr, bool(reject_linear)))


def _screen(expr: Expression, reject_linear: bool) -> Verdict:
    x, beta, y = probe(expr, torch.float32, grad=True)
    if not torch.isfinite(y[:, 0]).all():
        return Verdict(False, f"non-finite output on [-5, 5] (beta={BETA_START})")
    gx, gb = torch.autograd.grad(y[:, 0].sum(), (x, beta), allow_unused=True)
    if any(g is not None and not torch.isfinite(g[:, 0]).all() for g in (gx, gb)):
        return Verdict(False, f"non-finite gradient on [-5, 5] (beta={BETA_START})")
    with torch.no_grad():  # degeneracy in float64: float32 round-off at betas far from 1 is no variation in x
        yd = probe(expr, torch.float64)[2]
    finite = torch.isfinite(yd).all(dim=0)  # per beta vector
    yd = torch.where(finite, yd, 0.0)
    top = yd.abs().amax(dim=0).clamp(min=1.0)
    varies = finite & ((yd.amax(dim=0) - yd.amin(dim=0)) > 1e-6 * top)
    if not varies.any():
        return Verdict(False, "constant output")
    if reject_linear:
        xd = x.detach()[:, 0].double()
        design = torch.stack([xd, torch.ones_like(xd)], dim=1)
        coef = torch.linalg.lstsq(design, yd).solution
        resid = (design @ coef - yd).abs().amax(dim=0)
        if not (varies & (resid > 1e-4 * top)).any():
            return Verdict(False, "linear function (no nonlinearity)")
    return Verdict(True)
