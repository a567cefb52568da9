"""The core-unit search space: token strings a controller emits, and their conversion to expressions.

A core unit is ``b(u1(x1), u2(x2))``. Per unit the token string holds five positions, in this order:
input 1, input 2, unary 1, unary 2, binary. Unit ``i``'s inputs are ``x`` or ``u0`` .. ``u{i-1}`` (the outputs of earlier
units), so the first unit's inputs are always ``x``. The activation's output is the last unit's output.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator, Sequence

from search.language.expression import Expression, ExpressionError, Node, X, apply
from search.language.ops import BINARY, BINARY_BY_NAME, UNARY, UNARY_BY_NAME

POSITION_KINDS = ("input", "input", "unary", "unary", "binary")

MAX_CORE_UNITS = 8  # the paper searched up to 3; 8 units is already 10^38 token strings


@dataclass(frozen=True)
class Space:
    """A search space: number of core units and the unary / binary subsets (token names from ``search.language.ops``)."""

    core_units: int = 1
    unary: tuple[str, ...] = field(default_factory=lambda: tuple(op.name for op in UNARY))
    binary: tuple[str, ...] = field(default_factory=lambda: tuple(op.name for op in BINARY))

    def __post_init__(self):
        object.__setattr__(self, "unary", tuple(self.unary))
        object.__setattr__(self, "binary", tuple(self.binary))
        if not isinstance(self.core_units, int) or not 1 <= self.core_units <= MAX_CORE_UNITS:
            raise ExpressionError(f"core_units must be a whole number from 1 to {MAX_CORE_UNITS}, got "
                                  f"{str(self.core_units)[:40]}")
        for kind, names, table in (("unary", self.unary, UNARY_BY_NAME), ("binary", self.binary, BINARY_BY_NAME)):
            if not names:
                raise ExpressionError(f"the {kind} subset is empty")
            for name in names:
                if name not in table:
                    raise ExpressionError(f"unknown {kind} operator {name!r} (known: {', '.join(table)})")
            if len(set(names)) != len(names):
                raise ExpressionError(f"the {kind} subset lists an operator twice")

    # -- positions

    @cached_property
    def choices(self) -> tuple[tuple[str, ...], ...]:
        """The legal tokens at each position of a token string (``5 * core_units`` positions)."""
        out = []
        for unit in range(self.core_units):
            inputs = ("x",) + tuple(f"u{j}" for j in range(unit))
            out += [inputs, inputs, self.unary, self.unary, self.binary]
        return tuple(out)

    @property
    def length(self) -> int:
        return 5 * self.core_units

    @cached_property
    def size(self) -> int:
        """Number of token strings."""
        return math.prod(len(c) for c in self.choices)

    def indices_from_tokens(self, tokens: Sequence[str]) -> tuple[int, ...]:
        self.validate(tokens)
        return tuple(self.choices[p].index(t) for p, t in enumerate(tokens))

    def validate(self, tokens: Sequence[str]) -> None:
        if len(tokens) != self.length:
            raise ExpressionError(f"a token string of this space has {self.length} tokens, got {len(tokens)}")
        for p, t in enumerate(tokens):
            if t not in self.choices[p]:
                unit, slot = divmod(p, 5)
                raise ExpressionError(
                    f"token {p + 1} ({POSITION_KINDS[slot]} of unit {unit}) is {t!r}; allowed: {', '.join(self.choices[p])}")

    def enumerate(self) -> Iterator[tuple[str, ...]]:
        """Every token string, in a fixed (lexicographic by position) order."""
        return itertools.product(*self.choices)

    def tokens_at(self, position: int) -> tuple[str, ...]:
        """The token string at ``position`` of ``enumerate()`` (mixed-radix, last position fastest)."""
        out = []
        for choices in reversed(self.choices):
            position, i = divmod(position, len(choices))
            out.append(choices[i])
        return tuple(reversed(out))

    # -- to and from expressions

    def decode(self, tokens: Sequence[str]) -> Expression:
        """The expression a token string computes."""
        self.validate(tokens)
        return Expression(tokens_to_node(tokens))

    def match(self, expr: Expression) -> tuple[str, ...] | None:
        """A token string of this space whose units build ``expr``'s tree (structurally), or ``None``. To find one
        computing the same function by another tree, see ``search.language.index.FunctionIndex.encode``."""
        units = _units_of(expr.root)
        if units is None or len(units) > self.core_units:
            return None
        return self.pad_units(*units)

    def pad_units(self, *units: Sequence[str]) -> tuple[str, ...] | None:
        """The token string whose last units are ``units`` (5 tokens each; the leading unused units compute
        ``x + x``), or ``None`` when it is not of this space."""
        tokens = _pad([tuple(u) for u in units], self.core_units)
        return tokens if self._allowed(tokens) else None

    def _allowed(self, tokens: Sequence[str]) -> bool:
        try:
            self.validate(tokens)
        except ExpressionError:
            return False
        return True


def tokens_to_node(tokens: Sequence[str]) -> Node:
    if len(tokens) % 5:
        raise ExpressionError(f"a token string has 5 tokens per core unit, got {len(tokens)}")
    units: list[Node] = []
    for unit in range(len(tokens) // 5):
        in1, in2, u1, u2, b = tokens[5 * unit: 5 * unit + 5]
        args = []
        for inp, u in ((in1, u1), (in2, u2)):
            if inp == "x":
                source = X
            elif inp.startswith("u") and inp[1:].isdigit() and int(inp[1:]) < unit:
                source = units[int(inp[1:])]
            else:
                raise ExpressionError(f"unit {unit} cannot take input {inp!r}")
            if u not in UNARY_BY_NAME:
                raise ExpressionError(f"unknown unary operator {u!r}")
            args.append(apply(u, source))
        if b not in BINARY_BY_NAME:
            raise ExpressionError(f"unknown binary operator {b!r}")
        units.append(apply(b, *args))
    return units[-1]


def format_tokens(tokens: Sequence[str]) -> str:
    """Readable token string: units separated by ``|``, e.g. ``x x scale x sigmul``."""
    return " | ".join(" ".join(tokens[i:i + 5]) for i in range(0, len(tokens), 5))


def parse_tokens(text: str) -> tuple[str, ...]:
    return tuple(text.replace("|", " ").split())


# ---------------------------------------------------------------- structural matching

def _operand(node: Node):
    """The (unary name, source node) that produces ``node`` as one operand of a binary, or None."""
    if node.is_x or node.op.arity == 2:
        return "x", node
    if node.op.name == "beta":
        return "beta", X
    for child in dict.fromkeys((node.children[0], _rewrite(node.children[0]))):
        if child.is_x or child.op.arity == 2:
            return node.op.name, child
    return None


def _rewrite(node: Node) -> Node:
    # a**2 is mul(a, a), so atan(x)**2 is one unit.
    if node.op is not None and node.op.name == "square":
        return Node(BINARY_BY_NAME["mul"], (node.children[0], node.children[0]))
    # The parser reads `beta * a` as scale(a) and `a + beta` as shift(a); as operands they are mul / add with beta.
    if node.op is not None and node.op.name in ("scale", "shift"):
        beta = Node(UNARY_BY_NAME["beta"], (X,))
        if node.op.name == "scale":
            return Node(BINARY_BY_NAME["mul"], (beta, node.children[0]))
        return Node(BINARY_BY_NAME["add"], (node.children[0], beta))
    # mul(a, sigmoid(b)) and mul(sigmoid(b), a) are the binary sigmul(b, a).
    if node.op is not None and node.op.name == "mul":
        a, b = node.children
        for s, other in ((b, a), (a, b)):
            if s.op is not None and s.op.name == "sigmoid":
                return Node(BINARY_BY_NAME["sigmul"], (s.children[0], other))
    return node


def _units_of(root: Node) -> list[tuple[str, ...]] | None:
    """Core units computing ``root`` (the last one is the output), or None. Tries each node as written first, then
    its rewritten form, undoing partial work between attempts."""
    units: list[tuple[str, ...]] = []
    index: dict[Node, int] = {}

    def operand(child: Node) -> tuple[str, str] | None:
        for form in dict.fromkeys((child, _rewrite(child))):
            found = _operand(form)
            if found is None:
                continue
            unary, source = found
            if source.is_x:
                return "x", unary
            j = visit(source)
            if j is not None:
                return f"u{j}", unary
        return None

    def visit(node: Node) -> int | None:
        for form in dict.fromkeys((node, _rewrite(node))):
            if form in index:
                return index[form]
            if form.op is None or form.op.arity != 2:
                continue
            mark = len(units)
            parts = [operand(child) for child in form.children]
            if None in parts:
                for key in [k for k, v in index.items() if v >= mark]:
                    del index[key]
                del units[mark:]
                continue
            units.append((parts[0][0], parts[1][0], parts[0][1], parts[1][1], form.op.name))
            index[form] = len(units) - 1
            return len(units) - 1
        return None

    return units if visit(root) is not None else None


def _pad(units: list[tuple[str, ...]], core_units: int) -> tuple[str, ...]:
    """Shift unit references so ``units`` fill the last slots; the leading unused units compute ``x + x``."""
    shift = core_units - len(units)
    out: list[str] = []
    for _ in range(shift):
        out += ["x", "x", "x", "x", "add"]
    for in1, in2, u1, u2, b in units:
        out += [_shift_ref(in1, shift), _shift_ref(in2, shift), u1, u2, b]
    return tuple(out)


def _shift_ref(ref: str, shift: int) -> str:
    return ref if ref == "x" else f"u{int(ref[1:]) + shift}"
