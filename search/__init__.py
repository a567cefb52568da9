"""actsearch's search space and search loop. Public API: ``Expression``, ``Space``."""
from search.expression import Expression, ExpressionError, Verdict
from search.space import Space

__all__ = ["Expression", "ExpressionError", "Space", "Verdict"]
