"""Initializers whose bytes live in an external data file: read through a memory map, never loaded whole."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from onnx import TensorProto, helper

SLICE_BYTES = 16 * 2**20


def is_external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL


def _where(tensor: TensorProto, base_dir: Path) -> tuple[Path, int, int]:
    fields = {entry.key: entry.value for entry in tensor.external_data}
    path = base_dir / fields["location"]
    offset = int(fields.get("offset", 0))
    length = int(fields.get("length", path.stat().st_size - offset))
    return path, offset, length


def external_array(tensor: TensorProto, base_dir: Path) -> np.ndarray:
    """A read-only view of the tensor in its data file; its pages are dropped when the view is."""
    path, offset, length = _where(tensor, base_dir)
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    shape = tuple(tensor.dims)
    if length == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def external_slices(tensor: TensorProto, base_dir: Path) -> Iterator[np.ndarray]:
    """The tensor's bytes, SLICE_BYTES at a time."""
    path, offset, length = _where(tensor, base_dir)
    if length == 0:
        return
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))
    for start in range(0, length, SLICE_BYTES):
        yield raw[start:start + SLICE_BYTES]
