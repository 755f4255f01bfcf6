"""Agreement by position bucket, so drift that only long positions show is not averaged away."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import Agreement, PositionAgreement

FIRST_EDGES = (0, 128, 512, 1024)  # then doubling: 1k-2k, 2k-4k, ...


@dataclass(frozen=True)
class Bucket:
    start: int  # first position, inclusive
    end: int  # last position, exclusive (the bucket's nominal end; fewer positions may have been scored)
    agreement: Agreement

    @property
    def label(self) -> str:
        return f"{_short(self.start)}-{_short(self.end)}"


def _short(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def bucket_edges(positions: int) -> list[int]:
    """Edges covering [0, positions): 0, 128, 512, 1024, 2048, ... up to the first at or past `positions`."""
    edges = list(FIRST_EDGES)
    while edges[-1] < positions:
        edges.append(edges[-1] * 2)
    last = next(i for i, edge in enumerate(edges) if edge >= positions)
    return edges[:last + 1]


def concatenate(parts: list[PositionAgreement]) -> PositionAgreement:
    return PositionAgreement(kl=np.concatenate([p.kl for p in parts]), top1=np.concatenate([p.top1 for p in parts]),
                             max_abs=np.concatenate([p.max_abs for p in parts]))


def buckets(scores: PositionAgreement) -> list[Bucket]:
    edges = bucket_edges(len(scores.kl))
    return [Bucket(start, end, PositionAgreement(scores.kl[start:end], scores.top1[start:end],
                                                 scores.max_abs[start:end]).summary())
            for start, end in zip(edges, edges[1:])]
