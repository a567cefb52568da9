"""The simplest text of a function: what tables, reports and plots show in place of a candidate's canonical text.

A candidate's canonical text is its tree printed (``search.language.expression``); the store records it and commands
look functions up by it. The tree often says more than the function: ``max(relu(x), x)`` is ``relu(x)``,
``x - relu(x)`` is ``min0(x)``. ``simplest_text`` picks the shortest of the texts it tries that compute the same
function, judged by ``Expression.fingerprint`` (which makes every beta occurrence its own parameter, so
``beta * x - beta * x`` is no constant, and the lone ``beta`` is a constant function of x) and checked where a child
uses the function, far outside the fingerprint's probe range [-5, 5] (``agree_widely``: ``max(sqrt(x), softplus(x))``
is softplus on [-5, 5] only, ``sqrt``'s floor decides below -5.76). For displays only: nothing recorded changes.

``readable_text`` writes a tree the way a person reads it (``sigmul(beta * x, x)`` as ``x * sigmoid(beta * x)``,
text that parses back to the same function) and ``typeset_html`` as mathematics (``x·σ(βx)``), both from the
operator table's ``DISPLAY`` column.

>>> simplest_text(Expression.parse("max(relu(x), x)"))
'relu(x)'
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np
import torch

from search.language.errors import ExpressionError
from search.language.expression import Expression, Node, X, apply
from search.language.identity import BETA_START, PROBE_BETAS, PROBE_POINTS, one_thread, quantize
from search.language.ops import ATOM, DISPLAY, PRODUCT, UNARY

_ROUNDS = 8  # rewrites of a shorter find are tried again; the length falls each round, this only caps the worst case


@lru_cache(maxsize=1 << 16)
def fingerprint_of(text: str) -> str | None:
    """``Expression.parse(text).fingerprint()``, or None when ``text`` does not parse. Cached per process: a
    fingerprint of a one-unit function costs 0.1-1 ms (more with many betas), and displays ask for the same texts
    again and again."""
    try:
        return Expression.parse(text).fingerprint()
    except ExpressionError:
        return None


_SKETCH_BETAS = (BETA_START, *PROBE_BETAS)


@lru_cache(maxsize=1 << 16)
def _sketch(text: str) -> bytes:
    """A digest of the function's values on the probe points with every beta at once at 1, at 1.83, 0.37 and -0.61,
    quantized as the fingerprint quantizes them: one evaluation, where a fingerprint of a function with many betas
    evaluates hundreds of beta vectors. Functions equal at every beta (up to renumbering the betas, or betas one of
    them ignores) have equal sketches, so ``simplest_text`` fingerprints only candidates whose sketch is the
    expression's: ``mix(a, b)`` and ``a`` agree at beta = 1, not at the others."""
    expr = Expression.parse(text)
    x = torch.tensor(PROBE_POINTS, dtype=torch.float64)[:, None].repeat(1, len(_SKETCH_BETAS))
    beta = torch.tensor(_SKETCH_BETAS, dtype=torch.float64)[None, :].repeat(max(expr.n_betas, 1), 1)
    with torch.no_grad(), one_thread():  # as the fingerprint: extra threads only wait on busy cores
        y = expr(x, beta)
    return hashlib.sha1(quantize(y.numpy()).tobytes()).digest()


# Where ``agree_widely`` compares two functions: x on [-50, 50] (inputs a child's activations reach, ten times the
# fingerprint's range), every beta at once at the start, the probe betas and further out (trained betas go there).
WIDE_POINTS = np.linspace(-50.0, 50.0, 2001)
WIDE_BETAS = (BETA_START, *PROBE_BETAS, -2.0, 2.5)
WIDE_RTOL, WIDE_ATOL = 1e-6, 1e-6  # float64 rounding of two trees of one function stays below (cancellation aside)


@lru_cache(maxsize=1 << 14)
def _wide(text: str) -> np.ndarray:
    """The function's values on ``WIDE_POINTS`` x ``WIDE_BETAS`` (every beta occurrence at the same value)."""
    expr = Expression.parse(text)
    x = torch.tensor(WIDE_POINTS, dtype=torch.float64)[:, None].repeat(1, len(WIDE_BETAS))
    beta = torch.tensor(WIDE_BETAS, dtype=torch.float64)[None, :].repeat(max(expr.n_betas, 1), 1)
    with torch.no_grad(), one_thread():
        return expr(x, beta).numpy()


def agree_widely(a: str, b: str) -> bool:
    """Whether two expression texts compute the same values on [-50, 50] at the ``WIDE_BETAS`` (within ``WIDE_RTOL``
    relative, ``WIDE_ATOL`` absolute; NaN and infinities where both have them): what a fingerprint's equality must
    also pass before a display claims two functions are one. False when either does not parse."""
    try:
        va, vb = _wide(a), _wide(b)
    except ExpressionError:
        return False
    with np.errstate(invalid="ignore"):
        close = np.isclose(va, vb, rtol=WIDE_RTOL, atol=WIDE_ATOL, equal_nan=True)
    return bool(close.all())


def same_function(a: str, b: str) -> bool:
    """Equal fingerprints (cached) and ``agree_widely``: the equality displays claim."""
    fingerprint = fingerprint_of(a)
    return fingerprint is not None and fingerprint == fingerprint_of(b) and agree_widely(a, b)


@lru_cache(maxsize=1 << 16)
def _canonical(text: str) -> str | None:
    try:
        return Expression.parse(text).text
    except ExpressionError:
        return None


@lru_cache(maxsize=1)
def _unary_texts() -> tuple[str, ...]:
    """Every unary of the table on ``x`` and on ``-x``, and their negations: ``relu(x)``, ``relu(-x)``,
    ``-relu(x)``, ..., ``x``, ``-x``, ``beta``. Their fingerprints are cached once per process."""
    texts = []
    for op in UNARY:
        for arg in (X, apply("neg", X)):
            node = apply(op, arg)
            texts += [Expression(node).text, Expression(apply("neg", node)).text]
    return tuple(dict.fromkeys(texts))


def _dropped(node: Node) -> Iterator[Node]:
    """Trees with one operator replaced by one of its operands: ``max(relu(x), x)`` gives ``relu(x)``, ``x``,
    ``max(x, x)``."""
    yield from node.children
    for i, child in enumerate(node.children):
        for smaller in _dropped(child):
            yield Node(node.op, node.children[:i] + (smaller,) + node.children[i + 1:])


def _rewrites(root: Node) -> set[str]:
    """Texts that may compute what ``root`` computes: its subtrees and its trees with one operand dropped."""
    return {Expression(node).text for node in (*root.walk(), *_dropped(root))}


def simplest_text(expr: Expression, known: Iterable[str] = ()) -> str:
    """The shortest text whose function has ``expr``'s fingerprint and agrees with it on [-50, 50] (``same_function``);
    ties go to the alphabetically first, except that ``expr.text`` wins a tie for the shortest.

    Candidates: ``expr.text``, its subtrees and rewrites (one operand dropped), each unary on ``x`` and ``-x`` and its
    negation, and ``known``: other texts of the same function (a run's duplicates; texts that do not parse are
    skipped, the rest are printed canonically). When a shorter text is found, its own rewrites are tried too. Only
    texts shorter than the best so far are tried: sketched (one evaluation), and fingerprinted only when the sketch
    is ``expr``'s (both cached per process): a one-unit expression takes about a
    millisecond, an eight-unit one tens.
    """
    own = expr.text
    sketch = _sketch(own)
    rank = lambda text: (len(text), text != own, text)  # noqa: E731
    best = own
    pool = {*_unary_texts(), *(t for t in map(_canonical, known) if t is not None)}
    tried: set[str] = {own}
    source = expr.root
    for _ in range(_ROUNDS):
        fresh = sorted((t for t in pool | _rewrites(source) if t not in tried and rank(t) < rank(best)), key=rank)
        found = None
        for text in fresh:
            tried.add(text)
            if _sketch(text) == sketch and same_function(text, own):
                found = text
                break
        if found is None:
            break
        best = found
        source = Expression.parse(best).root
    return best


# ---------------------------------------------------------------- readable and typeset forms

def _shown(node: Node, typeset: bool) -> tuple[str, int]:
    """``node`` in the ``DISPLAY`` forms, and the precedence of the result."""
    if node.is_x:
        return "x", ATOM
    op, shown = node.op, DISPLAY[node.op.name]
    children = node.children
    if typeset:
        form, prec, need = shown.typeset, op.prec, shown.operand_prec or op.operand_prec
    elif shown.text:
        form, prec, need = shown.text, shown.text_prec, shown.text_operand_prec
    else:
        form, prec, need = op.form, op.prec, op.operand_prec
    if shown.x_first and children[1].is_x:  # x * sigmoid(beta * x): the input first, as the paper writes swish
        form, prec, need, children = shown.x_first[typeset], PRODUCT, shown.x_first_prec[typeset:][:1], children[:1]
    parts = []
    for child, want in zip(children, need):
        text, child_prec = _shown(child, typeset)
        parts.append(text if child_prec >= want else f"({text})")
    if typeset and shown.typeset_dot and parts[0][:1].isalpha() and parts[0] != "x":  # β·softplus(x), βx
        form = shown.typeset_dot
    return form.format(*parts), prec


def readable_text(expr: Expression | str) -> str:
    """``expr`` as displays write it: the printed text with ``DISPLAY``'s readable forms, ``sigmul(a, b)`` as
    ``sigmoid(a) * b`` and a bare x as the first factor (``x * sigmoid(beta * x)``). It parses back to the same
    function (tests/test_simplify.py checks every one-unit function).

    >>> readable_text("sigmul(cosh(x), relu(x))")
    'sigmoid(cosh(x)) * relu(x)'
    """
    expr = Expression.parse(expr) if isinstance(expr, str) else expr
    return _shown(expr.root, False)[0]


def typeset_html(expr: Expression | str) -> str:
    """``expr`` as HTML mathematics (no script needed): ``x * sigmoid(beta * x)`` -> ``x·σ(βx)``, powers in
    ``<sup>``. For the report and the dashboard; the text of a tag's body is escaped already (only ``x`` and the
    table's fixed forms appear)."""
    expr = Expression.parse(expr) if isinstance(expr, str) else expr
    return _shown(expr.root, True)[0]
