"""Expressions: trees over the operator table, their text syntax and eager evaluation (fingerprint and screen: ``search.language.identity``).

Text syntax (what users type and the tool prints)::

    sum     := product (("+" | "-") product)*
    product := prefix (("*" | "/") prefix)*
    prefix  := "-" prefix | power
    power   := atom ["**" ("2" | "3")]
    atom    := "x" | "beta" | NAME "(" sum ["," sum] ")" | "(" sum ")"

``+ - * /`` are the binary ``add sub mul div`` (``/`` is the protected ``x1 / (x2 + eps)``), ``-a`` is ``neg``,
``a**2``/``a**3`` are ``square``/``cube``, ``beta * a`` is ``scale``, ``a + beta`` is ``shift``, a lone ``beta`` is the
constant unary; every other operator is called by its token name (``sigmoid(x)``, ``max(x, y)``, ``gauss_diff(x, y)``).
``max(a, 0)`` and ``min(a, 0)`` (or ``max(0, a)``, ``min(0, a)``) are accepted for ``relu(a)`` and ``min0(a)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import torch

from search.language import identity
from search.language.errors import ExpressionError
from search.language.identity import Verdict
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
            if self.peek() != "(":  # a name, not a call
                raise self.error(f"unknown name {value!r}: the input is x, a trainable constant is beta, and an "
                                 f"operator is called, e.g. tanh(x) (operators: {known})", col)
            if value in OPS_BY_NAME:  # a token name (expr's token form, space --list) that is written otherwise
                op = OPS_BY_NAME[value]
                args = ", ".join(["x"] * op.arity)
                raise self.error(f"{value} is an operator's token name, written as an expression: {value}({args}) is "
                                 f"{Expression(apply(value, *[X] * op.arity)).text}", col)
            raise self.error(f"unknown operator {value!r} (known: {known})", col)
        op = CALLS[value]
        self.take("(")
        args = [self.zero_or_sum(op)]
        while self.peek() == ",":
            self.take()
            args.append(self.zero_or_sum(op))
        close_col = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        self.take(")")
        if op.name in ("max", "min") and len(args) == 2 and args.count("zero") == 1:  # max(a, 0) or max(0, a)
            return apply("relu" if op.name == "max" else "min0", args[args[0] == "zero"])
        if "zero" in args:
            raise self.error("constant 0 is only allowed as max(a, 0) or min(a, 0) (or max(0, a), min(0, a))", col)
        if len(args) != op.arity:
            raise self.error(f"{value} takes {op.arity} argument(s), got {len(args)}", close_col)
        return apply(op, *args)

    def zero_or_sum(self, op: Op):
        if op.name in ("max", "min") and self.peek() == "0" and self.i + 1 < len(self.tokens) \
                and self.tokens[self.i + 1][1] in (")", ","):
            self.take()
            return "zero"
        return self.sum()


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

    # -- identity of the function (search.language.identity)

    def fingerprint(self) -> str:
        """16 hex digits, the same for functions that compute the same values (``identity.fingerprint``)."""
        return identity.fingerprint(self)

    def screen(self, reject_linear: bool = True) -> Verdict:
        """A cheap verdict before any child trains (``identity.screen``): ``Verdict(ok, reason)``."""
        return identity.screen(self, reject_linear)
