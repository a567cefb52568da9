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
import itertools
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterator

import numpy as np
import torch

from search.language.errors import ExpressionError
from search.language.ops import ATOM, CALLS, OPS_BY_NAME, UNARY_BY_NAME, Op


@dataclass(frozen=True)
class Node:
    """A tree node: ``op is None`` is the input ``x``; otherwise ``op`` applied to ``children``.

    The constant unary ``beta`` keeps a child (always ``x``) so every unary node has exactly one child.
    """

    op: Op | None = None
    children: tuple["Node", ...] = ()

    def walk(self) -> Iterator["Node"]:
        """Pre-order traversal. (Betas are numbered in evaluation order, children first: see search.language.kernel.)"""
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

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_][A-Za-z_0-9]*)"
                    r"|(\*\*|[-+*/(),]))", re.ASCII)
MAX_TEXT = 2_000  # characters of expression text: the paper's largest functions print in under 100
MAX_TOKENS = 400  # tokens: bounds the tree, so printing and evaluating it never exhaust the stack either
MAX_DEPTH = 50  # nested parentheses, calls and signs: deeper text is refused before it can exhaust the stack


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
            if len(self.tokens) > MAX_TOKENS:
                raise self.error(f"more than {MAX_TOKENS} tokens (operators, names and brackets)", m.start())
        self.i = 0
        self.depth = 0

    def error(self, what: str, col: int | None = None) -> ExpressionError:
        if col is None:
            col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        shown = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return ExpressionError(f"{what} at column {col + 1} of {shown!r}")

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

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} levels deep")

    def sum(self) -> Node:
        self.nest()
        try:
            return self._sum()
        finally:
            self.depth -= 1

    def _sum(self) -> Node:
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
            self.nest()
            try:
                return apply("neg", self.prefix())
            finally:
                self.depth -= 1
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
BETA_START = 1.0  # every beta's initial value (search.language.kernel): training starts here
# Values a trained beta may move to: above 1, between 0 and 1, negative. Irregular on purpose, so that no simple map
# (1 - b, -b, 1 / b, b * b, sums) takes one set of probe betas onto another and makes two different functions agree.
PROBE_BETAS = (1.83, 0.37, -0.61)
# Quantisation grid of the fingerprint: 2**24 steps per column scale, float32's resolution (what a child computes in).
GRID = 2.0 ** 24
# Which fingerprint a run's store holds: 1 probed betas 1.0 and 0.6 only (before 2026-11-30); 2 is this one. A run
# keeps the version it was made with (search.loop.rundir), so fingerprints of two schemes never meet in one run.
FINGERPRINT_VERSION = 2
# codes of non-finite values (far outside [-GRID, GRID]) and of the scale of a column without nonzero finite values
_NAN, _POSINF, _NEGINF, _ZERO = 1 << 40, 1 << 41, -(1 << 41), -(1 << 60)


@lru_cache(maxsize=None)
def beta_assignments(n_betas: int) -> np.ndarray:
    """The beta vectors an expression with ``n_betas`` occurrences is probed at: float64 array (K, n_betas).

    Row 0 has every beta at ``BETA_START``. The others move some betas to ``PROBE_BETAS``, each value used at most once
    and the rest left at ``BETA_START``: every way of doing so (1 row for 0 betas, 4 for 1, 13 for 2, 34 for 3, 229 for
    6). Occurrences are independent parameters, so they get different values in the same row (``beta*x - beta*x`` is
    not ``x - x``). The set is closed under permuting the betas, and its rows restricted to any subset of the betas are
    exactly the set for that many betas; so as a *set* of probe results it is the same for ``f(b0, b1)`` and
    ``f(b1, b0)`` (which train identically: every beta starts at 1), and for a function and the same function with an
    extra beta it ignores (``mix(sin(x), sin(x))`` and ``sin(x)``). ``fingerprint`` and ``screen`` rely on both.
    The price of a small set: a row moves at most three betas away from 1, so with four or more betas, a difference
    that shows only when four have moved at once goes unseen.
    """
    rows = [[BETA_START] * n_betas]
    for k in range(1, min(n_betas, len(PROBE_BETAS)) + 1):
        for slots in itertools.combinations(range(n_betas), k):
            for values in itertools.permutations(PROBE_BETAS, k):
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
def _one_thread():
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
    >>> e(torch.linspace(-1, 1, 3))   # eager values at beta = 1
    """

    __slots__ = ("root", "__dict__")

    def __init__(self, root: Node):
        self.root = root

    @classmethod
    def parse(cls, text: str) -> "Expression":
        """Parse user text; raises ``ExpressionError`` naming the problem and its column."""
        if isinstance(text, str) and len(text) > MAX_TEXT:
            raise ExpressionError(f"expression of {len(text):,} characters: at most {MAX_TEXT:,} are accepted")
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

    # -- evaluation

    def __call__(self, x: torch.Tensor, beta: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Evaluate eagerly by walking the tree. x: (N,) or (N, C, ...); ``beta``: a scalar for every occurrence, or a
        tensor of shape (n_betas, C) (occurrences numbered in evaluation order, children first, as ``search.language.kernel``
        numbers them). For a module with trainable betas, see ``search.language.kernel.activation_module``."""
        if x.dim() == 1:
            return self(x[:, None], beta)[:, 0]
        if not isinstance(beta, torch.Tensor) or beta.dim() == 0:
            beta = torch.full((max(self.n_betas, 1), x.shape[1]), float(beta), dtype=x.dtype, device=x.device)
        b = beta.reshape((beta.shape[0], 1, beta.shape[1]) + (1,) * (x.dim() - 2))
        used = 0

        def visit(node: Node) -> torch.Tensor:
            nonlocal used
            if node.is_x:
                return x
            args = [visit(child) for child in node.children]
            if node.op.uses_beta:
                used += 1
                return node.op.fn(*args, b[used - 1])
            return node.op.fn(*args)

        return visit(self.root)

    # -- identity of the function

    def _probe(self, dtype: torch.dtype, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, beta, y)`` on the probe points at every beta vector of ``beta_assignments``, all in one call.

        x: (N, K), column j the probe points; beta: (max(n_betas, 1), K), column j the j-th beta vector (each column is
        a channel with its own betas); y: (N, K). grad: x and beta require grad.
        """
        betas = beta_assignments(self.n_betas)
        x = torch.tensor(PROBE_POINTS, dtype=dtype)[:, None].repeat(1, len(betas))
        beta = torch.tensor(betas.T, dtype=dtype) if self.n_betas else torch.ones(1, len(betas), dtype=dtype)
        if grad:
            x.requires_grad_(True)
            beta.requires_grad_(True)
        return x, beta, self(x, beta)

    def fingerprint(self) -> str:
        """16 hex digits, the same for functions that compute the same values on the probe points at every probe beta.

        Values are computed in float64 at each beta vector of ``beta_assignments`` and rounded by ``quantize``; the
        digest is of the *set* of rounded columns, so renumbering the betas or adding one the function ignores does not
        change it (see ``beta_assignments``). Two different functions could also share it if one's columns were the
        other's reordered by some map of the irregular ``PROBE_BETAS`` onto each other; none do in the one-unit space
        (tests/test_fingerprint.py checks fingerprints against numerical equality at random betas there).
        """
        with torch.no_grad(), _one_thread():
            y = self._probe(torch.float64)[2]
        codes = np.ascontiguousarray(quantize(y.numpy()).T)  # one row per beta vector
        columns = sorted({hashlib.sha1(row.tobytes()).digest() for row in codes})
        return hashlib.sha1(b"".join(columns)).hexdigest()[:16]

    def screen(self, reject_linear: bool = True) -> Verdict:
        """A cheap verdict before any child trains, in float32 as a child computes.

        Rejects a function with a non-finite output, or gradient for x or a beta, on the probe points with every beta at
        ``BETA_START`` (where training starts); then one whose output is constant in x, or (``reject_linear``) linear
        ``a*x + b``, at *every* probed beta vector (``beta_assignments``): betas train, so ``mix(x, relu(x))``, which is
        ``x`` at beta = 1, is a PReLU once beta moves. Non-finite values at the other beta vectors do not reject
        (training may never take a beta there, and a child that does diverges and is scored as such), but such a vector
        cannot show that the function is non-degenerate either.
        """
        with _one_thread():
            return self._screen(reject_linear)

    def _screen(self, reject_linear: bool) -> Verdict:
        x, beta, y = self._probe(torch.float32, grad=True)
        if not torch.isfinite(y[:, 0]).all():
            return Verdict(False, f"non-finite output on [-5, 5] (beta={BETA_START})")
        gx, gb = torch.autograd.grad(y[:, 0].sum(), (x, beta), allow_unused=True)
        if any(g is not None and not torch.isfinite(g[:, 0]).all() for g in (gx, gb)):
            return Verdict(False, f"non-finite gradient on [-5, 5] (beta={BETA_START})")
        yd = y.detach().double()
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
