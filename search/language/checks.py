"""One way every settings section reports a bad value: ``Problems``, a list of ``(field, what is wrong)``.

    out = Problems()
    out.one_of("device", self.device, ("auto", "cpu", "cuda"))
    out.within("steps", self.steps, 1, 10**7)
    out.need("lr", self.lr, self.lr > 0, "> 0")
    return out                                   # == [] when every value is usable
"""
from __future__ import annotations

from typing import Any, Sequence


class Problems(list):
    """``(field, message)`` pairs; each message says what is allowed and what was given."""

    def need(self, name: str, value: Any, ok: bool, allowed: str) -> None:
        """Record ``name`` as bad unless ``ok``: "must be ``allowed``, got ``value``"."""
        if not ok:
            self.append((name, f"must be {allowed}, got {value!r}"))

    def one_of(self, name: str, value: Any, allowed: Sequence[str]) -> None:
        self.need(name, value, value in allowed, "one of " + ", ".join(allowed))

    def within(self, name: str, value: Any, low: float, high: float) -> None:
        self.need(name, value, low <= value <= high, f"from {low:,} to {high:,}")
