"""Perplexity from logits already computed for agreement: exp of the mean next-token negative log-likelihood."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CHUNK = 128  # rows at a time


def token_nll(logits: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """-log p(targets[i]) under the logits of row i, for the first len(targets) rows: [len(targets)].

    CHUNK rows at a time: float64 copies of 152k-wide rows for a whole text would take gigabytes."""
    nll = np.empty(len(targets))
    for start in range(0, len(targets), CHUNK):
        rows = logits[start:min(start + CHUNK, len(targets))].astype(np.float64)  # [chunk, vocab]
        top = rows.max(-1)  # [chunk]
        log_total = top + np.log(np.exp(rows - top[:, None]).sum(-1))  # [chunk]
        chosen = np.asarray(targets[start:start + len(rows)], dtype=np.int64)
        nll[start:start + len(rows)] = log_total - rows[np.arange(len(rows)), chosen]
    return nll


def perplexity(nll: np.ndarray) -> float:
    return float(np.exp(np.mean(nll)))


@dataclass(frozen=True)
class Perplexity:
    value: float
    reference: float  # the reference's, on the same tokens
    tokens: int  # predicted tokens (the positions scored, less the last)

    @property
    def ratio(self) -> float:
        return self.value / self.reference
