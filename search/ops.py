"""The operator table: the one place where the search space's unary and binary functions are listed.

Every other module (parser, printer, compiler, fingerprint, controller vocabularies, reports) reads this table;
nothing else names an operator. The 25 unary and 10 binary functions are those of Ramachandran, Zoph & Le (2017).

Choices the paper leaves open (tested in tests/test_ops.py):
- ``EPS = 1e-5`` in ``log(|x| + eps)`` and ``x1 / (x2 + eps)``.
- ``sqrt(x)`` is ``sqrt(max(x, EPS))``: zero-ish (``sqrt(EPS)``) for ``x < EPS`` with zero gradient there, so the gradient
  stays finite everywhere (a plain ``sqrt(relu(x))`` has an infinite gradient at the exact zeros ReLU-like units emit).
- ``sinc(x)`` is the unnormalised ``sin(x) / x`` with ``sinc(0) = 1`` (the paper's ``sinc(x) + x`` plots that way).

Printing uses precedence levels so that text re-parses to the same tree; see ``search.expression``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

EPS = 1e-5

# Precedence of printed forms (higher binds tighter), shared with the parser.
SUM, PRODUCT, PREFIX, POWER, ATOM = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Op:
    """One unary or binary function of the space.

    name: the token name (what controllers emit and the store records).
    arity: 1 (unary) or 2 (binary).
    math: the formula as the paper writes it, for tables and docs.
    fn: torch implementation; takes ``arity`` tensors, plus ``beta`` (broadcastable tensor) when ``uses_beta``.
    form: printed form; ``{0}``/``{1}`` are the operands, already parenthesised to the precedences in ``operand_prec``.
    prec: precedence of the printed form.
    operand_prec: the minimum precedence each operand must have to be printed without parentheses.
    uses_beta: carries a trainable per-channel beta.
    """

    name: str
    arity: int
    math: str
    fn: Callable[..., torch.Tensor]
    form: str
    prec: int
    operand_prec: tuple[int, ...]
    uses_beta: bool = False

    def __call__(self, *args: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_beta:
            return self.fn(*args, beta)
        return self.fn(*args)


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.sinc(x / math.pi)


def _const_beta(x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return beta.expand_as(x) if beta.dim() == x.dim() else beta + torch.zeros_like(x)


_U = lambda name, math_, fn, form, prec, operand_prec, uses_beta=False: Op(  # noqa: E731
    name, 1, math_, fn, form, prec, operand_prec, uses_beta)
_B = lambda name, math_, fn, form, prec, operand_prec, uses_beta=False: Op(  # noqa: E731
    name, 2, math_, fn, form, prec, operand_prec, uses_beta)

# The paper's 25 unary functions, in its order.
UNARY: tuple[Op, ...] = (
    _U("x", "x", lambda x: x, "{0}", ATOM, (SUM,)),
    _U("neg", "-x", torch.neg, "-{0}", PREFIX, (PREFIX,)),
    _U("abs", "|x|", torch.abs, "abs({0})", ATOM, (SUM,)),
    _U("square", "x^2", torch.square, "{0}**2", POWER, (ATOM,)),
    _U("cube", "x^3", lambda x: x * x * x, "{0}**3", POWER, (ATOM,)),
    _U("sqrt", "sqrt(x)", lambda x: torch.sqrt(torch.clamp(x, min=EPS)), "sqrt({0})", ATOM, (SUM,)),
    _U("scale", "beta*x", lambda x, b: b * x, "beta * {0}", PRODUCT, (PREFIX,), True),
    _U("shift", "x + beta", lambda x, b: x + b, "{0} + beta", SUM, (SUM,), True),
    _U("log_abs", "log(|x| + eps)", lambda x: torch.log(torch.abs(x) + EPS), "log_abs({0})", ATOM, (SUM,)),
    _U("exp", "exp(x)", torch.exp, "exp({0})", ATOM, (SUM,)),
    _U("sin", "sin(x)", torch.sin, "sin({0})", ATOM, (SUM,)),
    _U("cos", "cos(x)", torch.cos, "cos({0})", ATOM, (SUM,)),
    _U("sinh", "sinh(x)", torch.sinh, "sinh({0})", ATOM, (SUM,)),
    _U("cosh", "cosh(x)", torch.cosh, "cosh({0})", ATOM, (SUM,)),
    _U("tanh", "tanh(x)", torch.tanh, "tanh({0})", ATOM, (SUM,)),
    _U("asinh", "asinh(x)", torch.asinh, "asinh({0})", ATOM, (SUM,)),
    _U("atan", "atan(x)", torch.atan, "atan({0})", ATOM, (SUM,)),
    _U("sinc", "sinc(x)", _sinc, "sinc({0})", ATOM, (SUM,)),
    _U("relu", "max(x, 0)", torch.relu, "relu({0})", ATOM, (SUM,)),
    _U("min0", "min(x, 0)", lambda x: torch.clamp(x, max=0.0), "min0({0})", ATOM, (SUM,)),
    _U("sigmoid", "sigmoid(x)", torch.sigmoid, "sigmoid({0})", ATOM, (SUM,)),
    _U("softplus", "log(1 + exp(x))", F.softplus, "softplus({0})", ATOM, (SUM,)),
    _U("gauss", "exp(-x^2)", lambda x: torch.exp(-torch.square(x)), "gauss({0})", ATOM, (SUM,)),
    _U("erf", "erf(x)", torch.erf, "erf({0})", ATOM, (SUM,)),
    _U("beta", "beta", _const_beta, "beta", ATOM, (SUM,), True),
)

# The paper's 10 binary functions, in its order.
BINARY: tuple[Op, ...] = (
    _B("add", "x1 + x2", torch.add, "{0} + {1}", SUM, (SUM, PRODUCT)),
    _B("mul", "x1 * x2", torch.mul, "{0} * {1}", PRODUCT, (PRODUCT, PREFIX)),
    _B("sub", "x1 - x2", torch.sub, "{0} - {1}", SUM, (SUM, PRODUCT)),
    _B("div", "x1 / (x2 + eps)", lambda a, b: a / (b + EPS), "{0} / {1}", PRODUCT, (PRODUCT, PREFIX)),
    _B("max", "max(x1, x2)", torch.maximum, "max({0}, {1})", ATOM, (SUM, SUM)),
    _B("min", "min(x1, x2)", torch.minimum, "min({0}, {1})", ATOM, (SUM, SUM)),
    _B("sigmul", "sigmoid(x1) * x2", lambda a, b: torch.sigmoid(a) * b, "sigmul({0}, {1})", ATOM, (SUM, SUM)),
    _B("gauss_diff", "exp(-beta (x1 - x2)^2)", lambda a, b, beta: torch.exp(-beta * torch.square(a - b)),
       "gauss_diff({0}, {1})", ATOM, (SUM, SUM), True),
    _B("laplace_diff", "exp(-beta |x1 - x2|)", lambda a, b, beta: torch.exp(-beta * torch.abs(a - b)),
       "laplace_diff({0}, {1})", ATOM, (SUM, SUM), True),
    _B("mix", "beta x1 + (1 - beta) x2", lambda a, b, beta: beta * a + (1 - beta) * b,
       "mix({0}, {1})", ATOM, (SUM, SUM), True),
)

UNARY_BY_NAME: dict[str, Op] = {op.name: op for op in UNARY}
BINARY_BY_NAME: dict[str, Op] = {op.name: op for op in BINARY}
OPS_BY_NAME: dict[str, Op] = {**UNARY_BY_NAME, **BINARY_BY_NAME}

# Function-call spellings the parser accepts: every operator printed as ``name(...)``, plus the paper's own words.
CALLS: dict[str, Op] = {op.name: op for op in UNARY + BINARY if op.form.startswith(op.name + "(")}


def operator_table_markdown() -> str:
    """The table as Markdown (README and ``actsearch space --list``)."""
    rows = ["| kind | token | paper's math | text syntax | beta |", "|---|---|---|---|---|"]
    for op in UNARY + BINARY:
        kind = "unary" if op.arity == 1 else "binary"
        form = op.form.format("x", "y") if op.arity == 2 else op.form.format("x")
        rows.append(f"| {kind} | `{op.name}` | `{op.math}` | `{form}` | {'yes' if op.uses_beta else ''} |")
    return "\n".join(rows)
