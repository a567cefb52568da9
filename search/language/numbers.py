"""``mean_sd``: the one mean and spread over seeds that every layer reports (the tables' rows, ``actsearch top``,
``actsearch calibrate``). It lives in the bottom layer so that the evaluator's table files can use it too."""
from __future__ import annotations

import statistics
from typing import Iterable


def mean_sd(values: Iterable[float]) -> tuple[float | None, float | None]:
    """``(mean, sd)`` of ``values``: the sample standard deviation (n - 1), None for fewer than two values; both None
    for none."""
    values = list(values)
    mean = statistics.fmean(values) if values else None
    return mean, statistics.stdev(values) if len(values) > 1 else None
