"""Weights must be finite: a NaN or Inf in a checkpoint (or one made by casting to a narrower type)
would export fine and compute garbage, so exporters check each block they write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import CheckpointError


def require_finite(block: np.ndarray, name: str, where: Path, row_offset: int = 0,
                   source: np.ndarray | None = None, transposed: bool = False) -> np.ndarray:
    """`block` (rows of tensor `name` from `row_offset`, cast from `source` when given) when all finite.
    `transposed`: the block holds rows of the tensor's transpose; the error names the stored position."""
    finite = np.isfinite(block)
    if finite.all():
        return block
    index = np.unravel_index(int(np.argmin(finite)), block.shape)
    at = (index[0] + row_offset, *index[1:]) if block.ndim else ()
    at = at[::-1] if transposed else at
    overflow = source is not None and np.isfinite(source[index])
    cause = f" after casting to {block.dtype} (its value {source[index]} is out of range)" if overflow else ""
    raise CheckpointError(f"tensor '{name}' holds a NaN or Inf at {list(map(int, at))}{cause}; "
                          "refusing to export a model that cannot compute", where)
