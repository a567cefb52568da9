"""One space's functions: token string -> expression, fingerprint and screen verdict, each computed once per process.

Every enumeration of a space by function goes through a ``FunctionIndex`` (the exhaustive and surrogate proposers,
``actsearch space``, the tabular benchmark's equivalents, the one-unit lookup of ``encode``), with one size limit,
``ENUMERATION_LIMIT``. ``FunctionIndex.of(space)`` is shared per space definition, so the proposers and the search
loop share the work: a token string is fingerprinted once, a function screened once (``search.language.identity``
memoises both by text).

>>> index = FunctionIndex.of(Space(1))
>>> entry = index.entry(("x", "x", "x", "sigmoid", "mul"), reject_linear=True)
>>> entry.expression.text, entry.verdict.ok
('x * sigmoid(x)', True)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from search.language.errors import UserError
from search.language.expression import Expression
from search.language.identity import Memo, Verdict
from search.language.space import Space

# Beyond this many token strings a space is not enumerated: its distinct functions are sampled (surrogate pool,
# ``actsearch space``) or walked lazily (exhaustive), never listed. The one-unit space has 6,250.
ENUMERATION_LIMIT = 200_000


@dataclass(frozen=True)
class Entry:
    """What the index knows of one token string: the expression it computes, its fingerprint and screen verdict."""

    tokens: tuple[str, ...]
    expression: Expression
    fingerprint: str
    verdict: Verdict


class FunctionIndex:
    """The functions of one ``Space``, by token string and by fingerprint (module docstring)."""

    def __init__(self, space: Space):
        self.space = space
        self._fingerprints: Memo = Memo()  # token string -> fingerprint
        self._functions: dict[str, tuple[tuple[str, ...], ...]] | None = None

    @staticmethod
    @lru_cache(maxsize=16)
    def of(space: Space) -> FunctionIndex:
        """The index of ``space``, shared by everything in this process that asks for the same space."""
        return FunctionIndex(space)

    @property
    def enumerable(self) -> bool:
        """Whether the space has at most ``ENUMERATION_LIMIT`` token strings."""
        return self.space.size <= ENUMERATION_LIMIT

    # -- one token string

    def expression(self, tokens: Sequence[str]) -> Expression:
        """The expression a token string computes (``ExpressionError`` for one not of this space)."""
        return self.space.decode(tokens)

    def fingerprint(self, tokens: Sequence[str]) -> str:
        """``Expression.fingerprint`` of the token string's function; memoised per token string."""
        tokens = tuple(tokens)
        known = self._fingerprints.get(tokens)
        if known is None:
            known = self._fingerprints.put(tokens, self.expression(tokens).fingerprint())
        return known

    def verdict(self, tokens: Sequence[str], reject_linear: bool) -> Verdict:
        """``Expression.screen(reject_linear)`` of the token string's function (memoised by its text)."""
        return self.expression(tokens).screen(reject_linear)

    def entry(self, tokens: Sequence[str], reject_linear: bool) -> Entry:
        """Expression, fingerprint and screen verdict of a token string."""
        tokens = tuple(tokens)
        expr = self.expression(tokens)
        return Entry(tokens, expr, self.fingerprint(tokens), expr.screen(reject_linear))

    # -- the whole space

    def functions(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        """Fingerprint -> every token string computing that function, both in enumeration order (``space.enumerate``);
        built once. Raises ``UserError`` for a space above ``ENUMERATION_LIMIT`` token strings."""
        if self._functions is None:
            if not self.enumerable:
                raise UserError(f"a space of {self.space.size:,} token strings is too large to enumerate (the limit, "
                                f"ENUMERATION_LIMIT, is {ENUMERATION_LIMIT:,})")
            groups: dict[str, list[tuple[str, ...]]] = {}
            for tokens in self.space.enumerate():
                groups.setdefault(self.fingerprint(tokens), []).append(tokens)
            self._functions = {fp: tuple(group) for fp, group in groups.items()}
        return self._functions

    def distinct(self) -> dict[str, tuple[str, ...]]:
        """Fingerprint -> the first token string (in enumeration order) computing it: each distinct function once.

        Fingerprints ignore the order of betas and betas a function does not use, so in the one-unit space the entry
        for the fingerprint of ``max(x + beta, beta * x)`` is ``x x scale shift max`` (``max(beta * x, x + beta)``)."""
        return {fp: group[0] for fp, group in self.functions().items()}

    def encode(self, expr: Expression) -> tuple[str, ...] | None:
        """A token string of this space computing ``expr``, or ``None``: the units of its tree (``Space.match``), else
        the one-unit space's token string of its fingerprint.

        The lookup goes by fingerprint, so its token string may number the betas differently from ``expr``, or have a
        beta the function ignores (the same function up to its parameters' names: it trains the same)."""
        tokens = self.space.match(expr)
        if tokens is not None:
            return tokens
        found = FunctionIndex.of(Space(1)).distinct().get(expr.fingerprint())
        return None if found is None else self.space.pad_units(found)
