"""Weights go from the memory-mapped checkpoint straight into the external data file, one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from onnx import TensorProto

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.external_data import ExternalDataWriter
from ...toolkit.finite import require_finite
from .dtypes import Precision

CHUNK_BYTES = 16 * 2**20  # a tensor is cast and transposed this many output bytes at a time


class WeightStore:
    """Reads a checkpoint tensor, casts and (for MatMul) transposes it, writes it, forgets it."""

    def __init__(self, checkpoint: Checkpoint, precision: Precision, writer: ExternalDataWriter,
                 on_written: Callable[[int], None] = lambda nbytes: None):
        self._checkpoint = checkpoint
        self._precision = precision
        self._writer = writer
        self._on_written = on_written
        self.initializers: list[TensorProto] = []
        self._names: set[str] = set()

    def add(self, name: str, transpose: bool = False) -> str:
        """Store checkpoint tensor `name` ([out, in] → [in, out] when `transpose`); return its graph name."""
        if name in self._names:
            return name
        stored = self._checkpoint.read(name)  # [out, in] memory-mapped, no copy
        view = stored.T if transpose else stored  # [in, out]: MatMul(x, W) without a Transpose node
        # Untransposed row blocks are contiguous in the file: their pages can go as soon as they are written.
        row_bytes = stored[:1].nbytes
        release = None if transpose else (lambda a, b: self._checkpoint.release(name, a * row_bytes, b * row_bytes))
        chunks = self._chunks(name, view, release, transpose)
        self.initializers.append(self._writer.write(name, view.shape, self._precision.weight, chunks))
        self._checkpoint.release(name)
        self._names.add(name)
        return name

    def _chunks(self, name: str, view: np.ndarray, release: Callable[[int, int], None] | None,
                transposed: bool) -> Iterator[np.ndarray]:
        """Row blocks of `view` cast to the weight dtype: a big embedding is never copied whole."""
        dtype = self._precision.weight_numpy
        row_bytes = view.size // max(len(view), 1) * dtype.itemsize
        step = max(1, CHUNK_BYTES // max(row_bytes, 1))
        for start in range(0, len(view), step):
            rows = view[start:start + step]
            with np.errstate(over="ignore"):  # an overflow is reported by require_finite, by name
                block = rows.astype(dtype, order="C")
            require_finite(block, name, self._checkpoint.directory, start, rows, transposed)
            self._on_written(block.nbytes)
            yield block
            if release is not None:
                release(start, start + step)


def data_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".data")
