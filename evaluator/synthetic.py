"""The ``synthetic`` task: score a candidate by its similarity to a target function, in milliseconds, without training.

It exists to test search machinery (controllers, the run loop, resume) with a reward whose optimum is known.

Similarity (the reward, in [0, 1]). Both functions are evaluated in float64 on the probe points of
``search.language.identity.PROBE_POINTS`` (1,000 N(0, 1) draws clipped to [-5, 5] plus an even grid on [-5, 5]), every beta
at 1 (the value a child starts from), together with their slopes (first derivatives, by autograd). The candidate
``f``, rescaled and shifted (``a * f + c`` with ``a >= 0``), and the best straight line ``c0 + c1 * x`` are both
least-squares fits of the target ``t``, counting values and slopes alike:

    similarity = max(0, 1 - ||t - (a f + c)|| / ||t - (c0 + c1 x)||)
    where ||g||^2 = sum over probe points of g(x)^2 + g'(x)^2

i.e. the fraction of the distance between the target and its best line that the candidate closes: 1 for the target
itself (up to scale and offset), 0 for anything no better than a line.

Why this measure:
- Degenerate functions earn nothing: a linear candidate fits exactly as well as the line (0) and a constant worse (0),
  so a controller cannot farm reward with ``3x``, ``1`` or ``-3`` (the trap a public replication fell into).
  Functions that produce NaN or infinities on the probe points are reported as ``diverged`` (no accuracy), like a
  child whose training blew up.
- The free scale and offset are what the next layer's weights and biases absorb, so ``2 * x * sigmoid(x)`` counts as
  the target; a free linear term is not (a plain network cannot add ``x`` back), so ``|x|`` or ``x**2``, whose shape
  is far from a monotone swish, score 0. ``a >= 0``: a mirror image (``-x * sigmoid(x)``) is not the target.
- Slopes count because backpropagation sees them: ``relu`` has nearly swish's values but a step for a slope (and no dip
  below zero), so it scores 0.58, not the 0.81 values alone would give; a wide plateau of relu-like functions would
  otherwise hide the smooth, self-gated functions that lead to the target (``x * tanh(softplus(x))`` 0.88,
  ``sigmoid(x) * softplus(x)`` 0.86).
"""
from __future__ import annotations

import hashlib
import math
import time
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from evaluator.result import ChildResult
from search.language.expression import Expression, ExpressionError
from search.language.identity import PROBE_POINTS

# Below this norm (relative to the function's scale) a centred function or a residual is numerically zero.
_FLAT = 1e-9


def _values_and_slopes(fn: Expression | Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """``[f(x); f'(x)]`` over the probe points (float64; slopes 0 where ``f`` does not depend on ``x``).

    fn: an expression (every beta at 1) or a function of a 1-D tensor."""
    x = torch.tensor(PROBE_POINTS, dtype=torch.float64, requires_grad=True)
    y = fn(x, 1.0) if isinstance(fn, Expression) else fn(x)
    slope = None
    if y.requires_grad:
        (slope,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    slope = torch.zeros_like(x) if slope is None else slope
    return np.concatenate([y.detach().numpy(), slope.numpy()])


_N = len(PROBE_POINTS)
# Least-squares design of the line c0 + c1 * x in value-and-slope space: values [1, x], slopes [0, 1].
_LINE = np.concatenate([np.stack([np.ones(_N), PROBE_POINTS], 1), np.stack([np.zeros(_N), np.ones(_N)], 1)])


def _norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow for huge but finite entries."""
    top = float(np.abs(v).max())
    return top * float(np.linalg.norm(v / top)) if top > 0 else 0.0


def _line_residual(joint: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(_LINE, joint, rcond=None)
    return float(np.linalg.norm(joint - _LINE @ coef))


def _centred(joint: np.ndarray) -> np.ndarray:
    """The offset ``c`` moves values only: centre the value half, keep the slope half."""
    out = joint.copy()
    out[:_N] -= out[:_N].mean()
    return out


@lru_cache(maxsize=16)
def _target(target: str) -> tuple[np.ndarray, float]:
    """The centred target (values and slopes) and the residual of its best line; ``ValueError`` if unusable."""
    joint = _values_and_slopes(Expression.parse(target))
    if not np.isfinite(joint).all():
        raise ValueError(f"target {target!r} is not finite on [-5, 5]")
    line_residual = _line_residual(joint)
    if line_residual <= _FLAT * max(1.0, float(np.abs(joint).max())) * math.sqrt(len(joint)):
        raise ValueError(f"target {target!r} is constant or linear: every candidate would score 0")
    return _centred(joint), line_residual


def synthetic_target_problem(target: str) -> str | None:
    """None if ``target`` can serve as the synthetic task's target, else what is wrong with it (one line)."""
    try:
        _target(target)
    except (ExpressionError, ValueError) as exc:
        return str(exc)
    return None


def similarity(candidate: Expression | Callable[[torch.Tensor], torch.Tensor],
               target: str = "x * sigmoid(x)") -> float | None:
    """Similarity in [0, 1] of ``candidate`` (an expression, or a function of a 1-D float64 tensor) to the ``target``
    expression text (see the module docstring).

    Returns None when the candidate or its slope is not finite on the probe points. Raises
    ``ValueError``/``ExpressionError`` for an unusable target.
    """
    target_joint, line_residual = _target(target)
    joint = _values_and_slopes(candidate)
    if not np.isfinite(joint).all():
        return None
    centred = _centred(joint)
    norm = _norm(centred)
    if norm <= _FLAT * max(1.0, float(np.abs(joint).max())) * math.sqrt(len(joint)):
        return 0.0  # constant: explains nothing
    direction = centred / norm
    residual = float(np.linalg.norm(target_joint - max(0.0, float(direction @ target_joint)) * direction))
    return max(0.0, 1.0 - residual / line_residual)


def _resolve(activation: str) -> tuple[Expression | Callable[[torch.Tensor], torch.Tensor], str]:
    """(what to evaluate, the name a result records): a baseline by name, else the parsed expression."""
    from evaluator.activations import BASELINES

    name = activation.strip().lower() if isinstance(activation, str) else activation
    if name in BASELINES:
        module = BASELINES[name](1, False).double()  # one channel, initial parameters (PReLU 0.25, Swish beta 1)
        return (lambda x: module(x[:, None])[:, 0]), name
    expr = Expression.parse(activation)
    return expr, expr.text


def _noise_rng(activation: str, seed: int) -> np.random.Generator:
    text_key = int.from_bytes(hashlib.sha1(activation.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed) % 2**63, text_key])


def evaluate_synthetic(activation: str, target: str = "x * sigmoid(x)", noise: float = 0.0, seed: int = 0,
                       split: str = "val") -> ChildResult:
    """A child's result record for the synthetic task; never raises.

    activation: the candidate's expression text, or a baseline's name (``relu``, ``gelu``, ... of
    ``evaluator.activations.BASELINES``, with their initial parameters). target: the target's expression text. noise: standard deviation of
    Gaussian noise added to the similarity (the result is clipped back to [0, 1]); the noise is drawn from a generator
    seeded by ``seed`` and the activation text, so the same (activation, seed) gives the same reward and different
    candidates of one run get independent noise. split: recorded as given.
    Returns a ``ChildResult``, as ``evaluator.train.train_child`` does: ``status`` "ok" with ``accuracy`` = the
    (noisy) similarity; "diverged" (no accuracy) when the candidate (or its slope) is not finite on the probe points;
    "failed" with ``error`` for unparseable text or an unusable target.
    """
    start = time.perf_counter()
    label = activation
    try:
        candidate, label = _resolve(activation)
        value = similarity(candidate, target)
    except (ExpressionError, ValueError) as exc:
        result = ChildResult.failed(label, seed, f"{type(exc).__name__}: {exc}", "candidate", split=split)
    else:
        if value is None:
            result = ChildResult.diverged(label, seed, "non-finite values on the probe points", split=split)
        else:
            if noise > 0:
                value += float(_noise_rng(label, seed).normal(0.0, noise))
                value = min(1.0, max(0.0, value))
            # 1 - similarity plays the part of a loss: 0 when the candidate is the target.
            result = ChildResult.ok(label, seed, float(value), split=split, train_loss=1.0 - value)
    result.device = "cpu"
    result.wall_s = time.perf_counter() - start
    return result
