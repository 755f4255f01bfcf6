"""ONNX initializers whose bytes live in an external data file: written one tensor at a time, read through a
memory map, never loaded whole. The exporter writes them, the backends read and rewrite them.

A reference (made by `reference`) is an initializer over a checkpoint tensor's own bytes in another dtype or
transposed: read, it is cast (and transposed) then. The portable graph of a `--target` export holds only
references, so a quantized build never writes, nor reads back, a float32 copy of the model. ONNX Runtime cannot
read one: only qwdeploy's backends see such a graph, and their writer turns every reference into plain data.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
from onnx import TensorProto, helper

from .checksums import BackgroundHash
from .finite import require_finite
from .safetensors_io import DTYPES, StoredSpan

SLICE_BYTES = 16 * 2**20  # tensors are copied, cast and transposed this many bytes at a time
TRANSPOSED_BLOCK_SLICES = 4  # a transposed tensor is written in blocks of this many slices
ALIGNMENT = 4096  # page-aligned offsets let runtimes memory-map each tensor
DERIVE_KEY = "qwdeploy_derive"  # on a reference: "<stored safetensors dtype>" plus ",T" when transposed


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
        expected = int(np.prod(shape)) * np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
        if self._offset - start != expected:  # a caller's bug, caught before the file says otherwise
            raise ValueError(f"'{name}': {self._offset - start} bytes written for a {tuple(shape)} tensor of "
                             f"{expected} bytes")
        return _external(name, elem_type, shape, location=self._location, offset=start, length=self._offset - start)


def _external(name: str, elem_type: int, shape: tuple[int, ...], **fields: object) -> TensorProto:
    tensor = TensorProto(name=name, data_type=elem_type, dims=list(shape))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in fields.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def reference(name: str, elem_type: int, stored: StoredSpan, transposed: bool) -> TensorProto:
    """An initializer over a stored tensor's bytes (a 2-D one when `transposed`), read as `elem_type`."""
    shape = stored.shape[::-1] if transposed else stored.shape
    return _external(name, elem_type, shape, location=stored.file, offset=stored.offset, length=stored.length,
                     **{DERIVE_KEY: stored.dtype + (",T" if transposed else "")})


def rows_per_slice(shape: tuple[int, ...], itemsize: int) -> int:
    """How many rows (along the first axis) of a tensor make about SLICE_BYTES."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return max(1, SLICE_BYTES // max(row_bytes, 1))


def converted_rows(view: np.ndarray, dtype: np.dtype, name: str, where: Path, transposed: bool = False,
                   release: Callable[[int, int], None] = lambda begin, end: None,
                   out: np.ndarray | None = None, step: int | None = None) -> Iterator[np.ndarray]:
    """Consecutive row blocks of `view` cast to `dtype` (C order; into the same rows of `out` when given), each
    checked finite, so a big tensor is never copied whole. `transposed`: `view` is a stored tensor's transpose
    (errors name the stored position). `release(begin, end)` runs once stored rows [begin, end) are copied, so
    their mapped pages can go. `step`: rows per block (default: about SLICE_BYTES)."""
    # Every block of a transposed view reads all stored rows: it copies them a band at a time and lets each band
    # go, so the map holds a band, not the tensor. The next block faults the bands back in from the page cache,
    # so its blocks are larger (7B's untied LM head to float32: 4.2 s against 5.3 s holding it mapped, 9.1 s in
    # blocks of one slice; the whole fp32 export peaks at 234-239 MiB, 1,148 before).
    step = step or rows_per_slice(view.shape, dtype.itemsize) * (TRANSPOSED_BLOCK_SLICES if transposed else 1)
    band = rows_per_slice(view.T.shape, view.itemsize) if transposed else 0
    for start in range(0, len(view), step):
        rows = view[start:start + step]
        block = np.empty(rows.shape, dtype) if out is None else out[start:start + step]
        with np.errstate(over="ignore"):  # an overflow is reported by require_finite, by name
            if transposed:
                for first in range(0, rows.shape[1], band):
                    np.copyto(block[:, first:first + band], rows[:, first:first + band], casting="unsafe")
                    release(first, min(first + band, rows.shape[1]))
            else:
                np.copyto(block, rows, casting="unsafe")
                release(start, start + len(rows))
        yield require_finite(block, name, where, start, rows, transposed)


def is_external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL


def _fields(tensor: TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _where(tensor: TensorProto, base_dir: Path) -> tuple[Path, int, int]:
    fields = _fields(tensor)
    path = base_dir / fields["location"]  # a reference's location is absolute and stays so
    offset = int(fields.get("offset", 0))
    length = int(fields.get("length", path.stat().st_size - offset))
    return path, offset, length


def external_key(tensor: TensorProto, base_dir: Path) -> tuple[Path, int, int, str]:
    """Which bytes of which file the tensor is, read how: two tensors with one key are views of the same data."""
    path, offset, length = _where(tensor, base_dir)
    return path.resolve(), offset, length, _fields(tensor).get(DERIVE_KEY, "")


def renamed(tensor: TensorProto, name: str, dims: tuple[int, ...]) -> TensorProto:
    """Another tensor over the same stored bytes (another name, another shape of as many elements)."""
    view = TensorProto()
    view.CopyFrom(tensor)
    view.name = name
    view.dims[:] = dims
    return view


def _dtype(tensor: TensorProto) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))


def drop_pages(rows: np.ndarray) -> None:
    """Let go of the memory-mapped file pages wholly under `rows` (C-contiguous, a read-only view into a file's
    map, as references and data files are read) once they are consumed, so a reader's peak memory follows its
    slice, not the tensor. Reading them again faults them back in. Anything else is left alone: on a writable
    or anonymous map the same advice would discard data."""
    mapped = rows.base
    while isinstance(mapped, np.ndarray):
        mapped = mapped.base
    mapped = mapped.obj if isinstance(mapped, memoryview) else mapped
    if (not isinstance(mapped, mmap.mmap) or rows.flags.writeable or not rows.flags.c_contiguous
            or not hasattr(mmap, "MADV_DONTNEED")):
        return
    begin = rows.ctypes.data - np.frombuffer(mapped, np.uint8, 0).ctypes.data
    first = -(-begin // mmap.PAGESIZE) * mmap.PAGESIZE  # inward: a neighbouring slice's page stays
    last = (begin + rows.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        mapped.madvise(mmap.MADV_DONTNEED, first, last - first)


def _stored(tensor: TensorProto, base_dir: Path) -> tuple[np.ndarray, bool] | None:
    """A reference's stored tensor, memory-mapped, and whether it is read transposed; None for plain data."""
    derive = _fields(tensor).get(DERIVE_KEY)
    if derive is None:
        return None
    path, offset, length = _where(tensor, base_dir)
    name, _, flag = derive.partition(",")
    transposed = flag == "T"
    shape = tuple(tensor.dims)[::-1] if transposed else tuple(tensor.dims)
    base = offset // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), offset - base + length, offset=base, access=mmap.ACCESS_READ)
    dtype = DTYPES[name]
    return np.frombuffer(mapped, dtype, length // dtype.itemsize, offset - base).reshape(shape), transposed


def external_array(tensor: TensorProto, base_dir: Path, stored: bool = False) -> np.ndarray:
    """The tensor: a read-only view of its data file (its pages are dropped when the view is), or for a
    reference its stored tensor cast in memory (read transposed as a view: no strided copy). `stored`: a
    reference's stored tensor itself, memory-mapped and maybe of another float dtype, unchecked, for a reader
    that casts slices as it goes (the quantizer)."""
    path, offset, length = _where(tensor, base_dir)
    dtype, shape = _dtype(tensor), tuple(tensor.dims)
    if length == 0:
        return np.zeros(shape, dtype)
    found = _stored(tensor, base_dir)
    if found is None:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    array, transposed = found
    if stored:
        return array.T if transposed else array
    cast = np.empty(array.shape, dtype)
    for _ in converted_rows(array, dtype, tensor.name, path, release=lambda b, e: drop_pages(array[b:e]), out=cast):
        pass
    return cast.T if transposed else cast


def external_rows(tensor: TensorProto, base_dir: Path, step: int | None = None) -> Iterator[np.ndarray]:
    """The tensor (a reference's cast and transposed) in consecutive blocks of `step` rows along its first axis
    (default: about SLICE_BYTES), each block's mapped pages let go once the caller has it back."""
    path, offset, length = _where(tensor, base_dir)
    dtype, shape = _dtype(tensor), tuple(tensor.dims) or (1,)
    step = step or rows_per_slice(shape, dtype.itemsize)
    if length == 0:
        return
    found = _stored(tensor, base_dir)
    if found is not None:
        array, transposed = found
        view = array.T if transposed else array
        yield from converted_rows(view, dtype, tensor.name, path, transposed, lambda b, e: drop_pages(array[b:e]),
                                  step=step)
        return
    data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    for start in range(0, shape[0], step):
        yield data[start:start + step]
        drop_pages(data[start:start + step])

