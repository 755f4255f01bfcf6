"""Median, min and max of repeated measurements."""

from __future__ import annotations

import statistics
from typing import Iterable


def summary(values: Iterable[float]) -> dict[str, float]:
    data = [float(v) for v in values]
    if not data:
        raise ValueError("no values to summarize")
    return {"median": statistics.median(data), "min": min(data), "max": max(data)}
