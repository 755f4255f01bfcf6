"""Safetensors read (memory-mapped, validated) and write (streamed, one tensor at a time).

Our own parser rather than the `safetensors` package: it lets every way a file can be wrong
(truncated, header that lies about sizes, overlapping ranges) become one clear line, and needs
nothing but numpy.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

import ml_dtypes
import numpy as np

from .errors import CheckpointError
from .files import brief, is_int, open_regular, parse_json_object

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_DIMS = 32  # numpy's own limit on dimensions is 64; no weight has more than a handful
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class TensorHeader:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte offset into the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class StoredSpan:
    """Where a tensor's bytes lie in its file, and what they hold."""

    file: Path
    offset: int  # from the start of the file
    length: int
    dtype: str  # a DTYPES name
    shape: tuple[int, ...]


class SafetensorsFile:
    """One .safetensors file: header parsed and checked on open, tensors mapped on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.headers, self.metadata, self._data_start = self._parse()
        self._mmap: mmap.mmap | None = None

    def _parse(self) -> tuple[dict[str, TensorHeader], dict[str, str], int]:
        try:
            with open_regular(self.path) as f:
                size = os.fstat(f.fileno()).st_size
                prefix = f.read(8)
                if len(prefix) < 8:
                    raise CheckpointError(f"truncated: {size} bytes, too short for a safetensors header", self.path)
                (header_len,) = struct.unpack("<Q", prefix)
                if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                    raise CheckpointError(
                        f"corrupt or truncated: header claims {header_len} bytes but the file has {size}", self.path
                    )
                raw = f.read(header_len)
        except OSError as exc:
            raise CheckpointError(f"cannot read ({exc.strerror or exc})", self.path) from None
        header = parse_json_object(raw, self.path, "safetensors header")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise CheckpointError("corrupt safetensors header ('__metadata__' must map names to strings)", self.path)
        data_len = size - 8 - header_len
        headers = {name: self._check_entry(name, entry, data_len) for name, entry in header.items()}
        self._check_overlaps(headers)
        return headers, metadata, 8 + header_len

    def _check_entry(self, name: str, entry: object, data_len: int) -> TensorHeader:
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
            raise CheckpointError(f"corrupt header entry for tensor {brief(name)}", self.path)
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(f"tensor {brief(name)} has unsupported dtype {brief(dtype)}", self.path)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise CheckpointError(f"tensor {brief(name)} has corrupt data_offsets {brief(offsets)} "
                                  "(need two non-negative integers, begin <= end)", self.path)
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(is_int(d) and d >= 0 for d in shape)):
            raise CheckpointError(f"tensor {brief(name)} has corrupt shape {brief(shape)} "
                                  f"(need at most {MAX_DIMS} non-negative integers)", self.path)
        # numpy indexes with int64: a shape beyond it can neither be mapped nor be honest.
        if math.prod(d for d in shape if d) * DTYPES[dtype].itemsize > INT64_MAX:
            raise CheckpointError(f"tensor {brief(name)} has shape {shape} whose size overflows int64", self.path)
        begin, end = offsets
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if end - begin != expected:
            raise CheckpointError(
                f"header lies about tensor {brief(name)}: shape {list(shape)} {dtype} needs {expected} bytes, "
                f"offsets span {end - begin}",
                self.path,
            )
        if end > data_len:
            raise CheckpointError(
                f"truncated: tensor {brief(name)} ends at data byte {end} but the file holds {data_len}", self.path
            )
        return TensorHeader(name, dtype, tuple(shape), begin, end)

    def _check_overlaps(self, headers: dict[str, TensorHeader]) -> None:
        spans = sorted((h.begin, h.end, h.name) for h in headers.values() if h.nbytes)
        for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
            if begin < end:
                raise CheckpointError(f"corrupt: tensors {brief(first)} and {brief(second)} overlap", self.path)

    def _map(self) -> mmap.mmap:
        if self._mmap is None:
            with open_regular(self.path) as f:
                self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mmap

    def tensor(self, name: str) -> np.ndarray:
        """A read-only array backed by the mapped file (no copy)."""
        h = self.headers[name]
        count = h.nbytes // DTYPES[h.dtype].itemsize
        array = np.frombuffer(self._map(), dtype=DTYPES[h.dtype], count=count, offset=self._data_start + h.begin)
        return array.reshape(h.shape)

    def span(self, name: str) -> StoredSpan:
        h = self.headers[name]
        return StoredSpan(self.path.resolve(), self._data_start + h.begin, h.nbytes, h.dtype, h.shape)

    def release(self, name: str, begin: int = 0, end: int | None = None) -> None:
        """Drop the mapped pages of a tensor's bytes [begin, end) once consumed, so peak RSS tracks
        the slice being worked on rather than everything read so far. Later reads fault them back."""
        if self._mmap is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        h = self.headers[name]
        stop = self._data_start + h.begin + (h.nbytes if end is None else end)
        start = (self._data_start + h.begin + begin) // mmap.PAGESIZE * mmap.PAGESIZE
        if stop > start:
            self._mmap.madvise(mmap.MADV_DONTNEED, start, stop - start)

    def close(self) -> None:
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None


@dataclass(frozen=True)
class TensorPlan:
    """A tensor to be written: its name, dtype and shape are known before its data exists."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def write_safetensors(
    path: Path, plans: list[TensorPlan], arrays: Iterable[np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write the header from `plans`, then each array as it arrives (same order, same shapes)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for plan in plans:
        header[plan.name] = {
            "dtype": DTYPE_NAMES[plan.dtype],
            "shape": list(plan.shape),
            "data_offsets": [offset, offset + plan.nbytes],
        }
        offset += plan.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        written = _write_arrays(f, plans, arrays)
    if written != len(plans):
        raise ValueError(f"{path}: {len(plans)} tensors planned, {written} written")


def _write_arrays(f: BinaryIO, plans: list[TensorPlan], arrays: Iterable[np.ndarray]) -> int:
    count = 0
    for plan, array in zip(plans, arrays):
        if array.dtype != plan.dtype or tuple(array.shape) != plan.shape:
            raise ValueError(f"tensor '{plan.name}': planned {plan.dtype}{plan.shape}, got {array.dtype}{array.shape}")
        f.write(np.ascontiguousarray(array).tobytes())
        count += 1
    return count
