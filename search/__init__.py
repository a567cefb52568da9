"""actsearch's search space and search loop. Public API: ``Expression``, ``Space``."""
from search.language.expression import Expression, ExpressionError, Verdict
from search.language.space import Space

__all__ = ["Expression", "ExpressionError", "Space", "Verdict"]
