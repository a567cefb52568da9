"""Expressions: trees over the operator table, their text syntax, fingerprints, screening and torch modules.

Text syntax (what users type and the tool prints)::

    sum     := product (("+" | "-") product)*
    product := prefix (("*" | "/") prefix)*
    prefix  := "-" prefix | power
    power   := atom ["**" ("2" | "3")]
    atom    := "x" | "beta" | NAME "(" sum ["," sum] ")" | "(" sum ")"

``+ - * /`` are the binary ``add sub mul div`` (``/`` is the protected ``x1 / (x2 + eps)``), ``-a`` is ``neg``,
``a**2``/``a**3`` are ``square``/``cube``, ``beta * a`` is ``scale``, ``a + beta`` is ``shift``, a lone ``beta`` is the
constant unary; every other operator is called by its token name (``sigmoid(x)``, ``max(x, y)``, ``gauss_diff(x, y)``).
``max(a, 0)`` and ``min(a, 0)`` are accepted for ``relu(a)`` and ``min0(a)``.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np
import torch

from search.ops import ATOM, BINARY_BY_NAME, CALLS, OPS_BY_NAME, POWER, PREFIX, PRODUCT, SUM, UNARY_BY_NAME, Op


class ExpressionError(ValueError):
    """A user's expression text or token string is not in the space; the message says what and where."""


@dataclass(frozen=True)
class Node:
    """A tree node: ``op is None`` is the input ``x``; otherwise ``op`` applied to ``children``.

    The constant unary ``beta`` keeps a child (always ``x``) so every unary node has exactly one child.
    """

    op: Op | None = None
    children: tuple["Node", ...] = ()

    def walk(self) -> Iterator["Node"]:
        """Pre-order traversal. (Betas are numbered in evaluation order, children first: see search.kernel.)"""
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def is_x(self) -> bool:
        return self.op is None


X = Node()
_IDENTITY = UNARY_BY_NAME["x"]


def apply(op: Op | str, *children: Node) -> Node:
    """Build ``op(children)``, dropping identity unaries and normalising ``beta``'s ignored child to ``x``."""
    op = OPS_BY_NAME[op] if isinstance(op, str) else op
    if len(children) != op.arity:
        raise ExpressionError(f"{op.name} takes {op.arity} argument(s), got {len(children)}")
    if op is _IDENTITY:
        return children[0]
    if op.name == "beta":
        return Node(op, (X,))
    return Node(op, tuple(children))


# ---------------------------------------------------------------- printing

def _to_text(node: Node) -> tuple[str, int]:
    if node.is_x:
        return "x", ATOM
    parts = []
    for child, need in zip(node.children, node.op.operand_prec):
        text, prec = _to_text(child)
        parts.append(text if prec >= need else f"({text})")
    return node.op.form.format(*parts), node.op.prec


# ---------------------------------------------------------------- parsing

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?)|([A-Za-z_][A-Za-z_0-9]*)|(\*\*|[-+*/(),]))")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, column)
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                col = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise self.error(f"unexpected character {text[col]!r}", col)
            kind = "num" if m.group(1) else "name" if m.group(2) else "sym"
            value = m.group(1) or m.group(2) or m.group(3)
            self.tokens.append((kind, value, m.start(m.lastindex)))
            pos = m.end()
        self.i = 0

    def error(self, what: str, col: int | None = None) -> ExpressionError:
        if col is None:
            col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        return ExpressionError(f"{what} at column {col + 1} of {self.text!r}")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str, int]:
        if self.i >= len(self.tokens):
            raise self.error(f"expected {expected!r}, found end of text" if expected else "unexpected end of text")
        tok = self.tokens[self.i]
        if expected is not None and tok[1] != expected:
            raise self.error(f"expected {expected!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression: type a function of x, e.g. 'x * sigmoid(beta * x)'")
        node = self.sum()
        if self.i < len(self.tokens):
            raise self.error(f"unexpected {self.peek()!r}")
        return node

    def sum(self) -> Node:
        node = self.product()
        while self.peek() in ("+", "-"):
            sym = self.take()[1]
            right = self.product()
            if sym == "+" and right.op is not None and right.op.name == "beta":
                node = apply("shift", node)
            else:
                node = apply("add" if sym == "+" else "sub", node, right)
        return node

    def product(self) -> Node:
        node = self.prefix()
        while self.peek() in ("*", "/"):
            sym = self.take()[1]
            right = self.prefix()
            if sym == "*" and node.op is not None and node.op.name == "beta":
                node = apply("scale", right)
            else:
                node = apply("mul" if sym == "*" else "div", node, right)
        return node

    def prefix(self) -> Node:
        if self.peek() == "-":
            self.take()
            return apply("neg", self.prefix())
        return self.power()

    def power(self) -> Node:
        node = self.atom()
        if self.peek() == "**":
            self.take()
            kind, value, col = self.take()
            if value not in ("2", "3"):
                raise self.error(f"only **2 and **3 are in the space, not **{value}", col)
            node = apply("square" if value == "2" else "cube", node)
            if self.peek() == "**":
                raise self.error("chained ** is ambiguous: add parentheses")
        return node

    def atom(self) -> Node:
        kind, value, col = self.take()
        if value == "(":
            node = self.sum()
            self.take(")")
            return node
        if kind == "num":
            raise self.error(f"constant {value} is not in the space (only beta, or 0 in max(a, 0) / min(a, 0))", col)
        if kind != "name":
            raise self.error(f"unexpected {value!r}", col)
        if value == "x":
            return X
        if value == "beta":
            return apply("beta", X)
        if value not in CALLS:
            known = ", ".join(sorted(CALLS))
            raise self.error(f"unknown operator {value!r} (known: {known})", col)
        op = CALLS[value]
        self.take("(")
        args = [self.zero_or_sum(op)]
        while self.peek() == ",":
            self.take()
            args.append(self.zero_or_sum(op))
        close_col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        self.take(")")
        if op.name in ("max", "min") and len(args) == 2 and args[1] == "zero":
            return apply("relu" if op.name == "max" else "min0", args[0])
        if "zero" in args:
            raise self.error("constant 0 is only allowed as max(a, 0) or min(a, 0)", col)
        if len(args) != op.arity:
            raise self.error(f"{value} takes {op.arity} argument(s), got {len(args)}", close_col)
        return apply(op, *args)

    def zero_or_sum(self, op: Op):
        if op.name in ("max", "min") and self.peek() == "0" and self.i + 1 < len(self.tokens) \
                and self.tokens[self.i + 1][1] == ")":
            self.take()
            return "zero"
        return self.sum()


# ---------------------------------------------------------------- probe points (fingerprint and screen)

def _probe_points() -> np.ndarray:
    # Act-Bench style: N(0, 1) draws clipped to [-5, 5] with a fixed seed, plus an even grid covering the whole range.
    rng = np.random.default_rng(20171016)
    normal = np.clip(rng.standard_normal(1000), -5, 5)
    return np.concatenate([normal, np.linspace(-5, 5, 101)])


PROBE_POINTS = _probe_points()
PROBE_BETAS = (1.0, 0.6)  # every beta of the function takes the same value; two values tell beta-dependent ones apart


@dataclass(frozen=True)
class Verdict:
    """Outcome of the pre-training screen: ``ok`` or the reason the candidate is not worth a child."""

    ok: bool
    reason: str = "ok"


class Expression:
    """An activation function: a tree over the operator table.

    >>> e = Expression.parse("x * sigmoid(beta * x)")
    >>> str(e)
    'x * sigmoid(beta * x)'
    >>> act = e.module(channels=16)   # an nn.Module with a (1, 16) beta, initialised to 1
    """

    __slots__ = ("root", "__dict__")

    def __init__(self, root: Node):
        self.root = root

    @classmethod
    def parse(cls, text: str) -> "Expression":
        """Parse user text; raises ``ExpressionError`` naming the problem and its column."""
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError("empty expression: type a function of x, e.g. 'x * sigmoid(beta * x)'")
        return cls(_Parser(text).parse())

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Expression) and self.root == other.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __reduce__(self):
        return (Expression.parse, (self.text,))

    @cached_property
    def text(self) -> str:
        return _to_text(self.root)[0]

    @cached_property
    def n_betas(self) -> int:
        """Number of beta occurrences; each is its own per-channel parameter."""
        return sum(1 for n in self.root.walk() if n.op is not None and n.op.uses_beta)

    @cached_property
    def size(self) -> int:
        """Number of operators in the tree (a rough complexity measure)."""
        return sum(1 for n in self.root.walk() if n.op is not None)

    # -- evaluation

    def __call__(self, x: torch.Tensor, beta: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Evaluate eagerly. ``beta``: a scalar for every occurrence, or a tensor of shape (n_betas, C)."""
        from search.kernel import kernel

        if not isinstance(beta, torch.Tensor) or beta.dim() == 0:
            channels = x.shape[1] if x.dim() >= 2 else 1
            beta = torch.full((max(self.n_betas, 1), channels), float(beta), dtype=x.dtype, device=x.device)
        if x.dim() == 1:
            return kernel(self.text, compiled=False)(x[:, None], beta)[:, 0]
        return kernel(self.text, compiled=False)(x, beta)

    def module(self, channels: int | None = None, compile: bool | None = None) -> torch.nn.Module:
        """A ``torch.nn.Module`` computing this function with one per-channel beta per occurrence (initialised to 1).

        channels: size of the input's dim 1; ``None`` sizes the betas from the first input (a lazy module: run one
        forward before building the optimizer). compile: ``True`` fuses with ``torch.compile`` (falling back to eager
        if compilation fails), ``False`` runs eager ops, ``None`` compiles on CUDA and on CPU when
        ``ACTSEARCH_COMPILE=1``.
        """
        from search.kernel import make_module

        return make_module(self.text, self.n_betas, channels, compile)

    # -- identity of the function

    def _probe_values(self, dtype=torch.float64) -> list[torch.Tensor]:
        x = torch.tensor(PROBE_POINTS, dtype=dtype)
        with torch.no_grad():
            return [self(x, b) for b in PROBE_BETAS]

    def fingerprint(self) -> str:
        """Same hex digest for functions that compute the same values on the probe points (both beta values)."""
        h = hashlib.sha1()
        for values in self._probe_values():
            v = values.numpy()
            finite = np.isfinite(v)
            mant, exp = np.frexp(np.where(finite, v, 0.0))
            q = np.where(finite, np.round(mant * 2**24).astype(np.int64) * 4096 + exp, 0)
            q = np.where(np.isnan(v), 1 << 62, q)
            q = np.where(np.isposinf(v), 3 << 60, q)
            q = np.where(np.isneginf(v), -(3 << 60), q)
            h.update(q.astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def screen(self, reject_linear: bool = True) -> Verdict:
        """A cheap verdict before any child trains: non-finite values or gradients, constant, (optionally) linear."""
        x = torch.tensor(PROBE_POINTS, dtype=torch.float32)
        for b in PROBE_BETAS:
            xg = x.clone().requires_grad_(True)
            beta = torch.full((max(self.n_betas, 1), 1), b, requires_grad=True)
            y = self(xg, beta)
            if not torch.isfinite(y).all():
                return Verdict(False, f"non-finite output on [-5, 5] (beta={b})")
            gx, gb = torch.autograd.grad(y.sum(), (xg, beta), allow_unused=True)
            if (gx is not None and not torch.isfinite(gx).all()) or (gb is not None and not torch.isfinite(gb).all()):
                return Verdict(False, f"non-finite gradient on [-5, 5] (beta={b})")
            yd = y.detach().double()
            if (yd.max() - yd.min()).item() <= 1e-6 * max(1.0, yd.abs().max().item()):
                return Verdict(False, "constant output")
            if reject_linear:
                xd = x.double()
                design = torch.stack([xd, torch.ones_like(xd)], dim=1)
                coef = torch.linalg.lstsq(design, yd[:, None]).solution
                resid = (design @ coef)[:, 0] - yd
                if resid.abs().max().item() <= 1e-4 * max(1.0, yd.abs().max().item()):
                    return Verdict(False, "linear function (no nonlinearity)")
        return Verdict(True)
