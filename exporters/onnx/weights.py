"""Weights go from the memory-mapped checkpoint straight into the external data file, one at a time, or stay
where they are as references (toolkit/external_data.py) for a backend to cast when it reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from onnx import TensorProto

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.external_data import ExternalDataWriter, converted_rows, reference
from .dtypes import Precision


class WeightStore:
    """Reads a checkpoint tensor, casts and (for MatMul) transposes it, writes it, forgets it."""

    def __init__(self, checkpoint: Checkpoint, precision: Precision, writer: ExternalDataWriter,
                 on_written: Callable[[int], None] = lambda nbytes: None, by_reference: bool = False):
        """`by_reference`: record where each safetensors tensor lies instead of writing it (pickle weights,
        held in memory, are still written)."""
        self._checkpoint = checkpoint
        self._precision = precision
        self._writer = writer
        self._by_reference = by_reference
        self._on_written = on_written
        self.initializers: list[TensorProto] = []
        self._names: set[str] = set()

    def add(self, name: str, transpose: bool = False) -> str:
        """Store checkpoint tensor `name` ([out, in] → [in, out] when `transpose`); return its graph name."""
        if name in self._names:
            return name
        self._names.add(name)
        span = self._checkpoint.weights.span(name) if self._by_reference else None
        if span is not None:
            self.initializers.append(reference(name, self._precision.weight, span, transpose))
            return name
        stored = self._checkpoint.read(name)  # [out, in] memory-mapped, no copy
        view = stored.T if transpose else stored  # [in, out]: MatMul(x, W) without a Transpose node
        row_bytes = stored[:1].nbytes
        chunks = converted_rows(view, self._precision.weight_numpy, name, self._checkpoint.directory, transpose,
                                lambda begin, end: self._checkpoint.release(name, begin * row_bytes, end * row_bytes))
        self.initializers.append(self._writer.write(name, view.shape, self._precision.weight, self._counted(chunks)))
        self._checkpoint.release(name)
        return name

    def _counted(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for chunk in chunks:
            yield chunk
            self._on_written(chunk.nbytes)


def data_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".data")
