"""ONNX initializers whose bytes live in an external data file: written one tensor at a time, read through a
memory map, never loaded whole. The exporter writes them, the backends read and rewrite them."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
from onnx import TensorProto, helper

from .checksums import BackgroundHash

SLICE_BYTES = 16 * 2**20
ALIGNMENT = 4096  # page-aligned offsets let runtimes memory-map each tensor


class ExternalDataWriter:
    """Appends tensors to one data file; hands back TensorProtos that only reference it."""

    def __init__(self, data_file: BinaryIO, location: str, digest: bool = True):
        """`location`: what the tensors record as their file (relative to the model, or absolute for a
        scratch file only qwdeploy reads). `digest`: hash while writing, so sealing needs no second pass."""
        self._file = data_file
        self._location = location
        self._offset = 0
        self._hash = BackgroundHash() if digest else None

    def _append(self, data) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self._file.write(data)

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def flush(self) -> None:
        """Make what was written readable through the file (a memory map of it)."""
        self._file.flush()

    def write(self, name: str, shape: tuple[int, ...], elem_type: int, chunks: Iterable[np.ndarray]) -> TensorProto:
        """Append a tensor given as consecutive row blocks of its (row-major) data."""
        pad = -self._offset % ALIGNMENT
        if pad:
            self._append(b"\0" * pad)
            self._offset += pad
        start = self._offset
        for chunk in chunks:
            self._append(memoryview(np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)))
            self._offset += chunk.nbytes
        tensor = TensorProto(name=name, data_type=elem_type, dims=list(shape))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self._location), ("offset", start), ("length", self._offset - start)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
        return tensor


def is_external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL


def _where(tensor: TensorProto, base_dir: Path) -> tuple[Path, int, int]:
    fields = {entry.key: entry.value for entry in tensor.external_data}
    path = base_dir / fields["location"]
    offset = int(fields.get("offset", 0))
    length = int(fields.get("length", path.stat().st_size - offset))
    return path, offset, length


def external_key(tensor: TensorProto, base_dir: Path) -> tuple[Path, int, int]:
    """Which bytes of which file the tensor is: two tensors with one key are views of the same data."""
    path, offset, length = _where(tensor, base_dir)
    return path.resolve(), offset, length


def renamed(tensor: TensorProto, name: str, dims: tuple[int, ...]) -> TensorProto:
    """Another tensor over the same stored bytes (another name, another shape of as many elements)."""
    view = TensorProto()
    view.CopyFrom(tensor)
    view.name = name
    view.dims[:] = dims
    return view


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
