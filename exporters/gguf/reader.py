"""A fast GGUF reader: metadata, tensor table, raw tensor bytes (memory-mapped).

gguf-py's GGUFReader wraps every string of a 150k-token vocabulary in its own numpy view and
takes seconds per file; reading arrays in bulk takes milliseconds.

The file may be anyone's, cut short or corrupt: every count and length is checked against the bytes
left before anything is allocated from it, and every problem is one ArtifactError line.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ...toolkit.errors import ArtifactError
from ...toolkit.files import brief, open_regular

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 used 32-bit counts and is long gone
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS

# GGUF value type id → numpy dtype, for scalars and numeric arrays.
NUMERIC = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
           7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
STRING, ARRAY = 8, 9
_U64 = struct.Struct("<Q")
# The fewest bytes one key/value pair and one tensor info can take: bounds the counts a header may claim.
MIN_KV_BYTES = 8 + 4 + 1
MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (GGUF stores ne0 first)
    qtype: GGMLQuantizationType
    offset: int  # absolute, in the file

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape[:-1]) * (self.shape[-1] // block) * size  # Python ints: cannot overflow


class _Cursor:
    """Reads from the header, refusing to read (or to be asked to allocate) past the end of the file."""

    def __init__(self, f: BinaryIO, size: int, path: Path):
        self.f, self.size, self.path, self.pos = f, size, path, 0

    def left(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        data = self.f.read(n) if n <= self.left() else b""
        if len(data) != n:
            raise ArtifactError(f"truncated or corrupt: {what} needs {n} bytes at offset {self.pos} "
                                f"but the file has {self.size}", self.path)
        self.pos += n
        return data

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt), what))

    def count(self, what: str, min_bytes: int) -> int:
        (n,) = self.unpack("<Q", what)
        if n * min_bytes > self.left():
            raise ArtifactError(f"truncated or corrupt: {what} is {n}, more than the {self.left()} bytes left "
                                "could hold", self.path)
        return n

    def string(self, what: str) -> str:
        return self.strings(1, what)[0]

    def strings(self, count: int, what: str) -> list[str]:
        # One tight loop, not a method call per item: a vocabulary array holds ~150k strings.
        read, unpack, pos, size, raws = self.f.read, _U64.unpack, self.pos, self.size, []
        for _ in range(count):
            head = read(8) if pos + 8 <= size else b""
            n = unpack(head)[0] if len(head) == 8 else size + 1  # cannot match: reported below
            raw = read(n) if pos + 8 + n <= size else b""
            if len(raw) != n:
                raise ArtifactError(f"truncated or corrupt: {what} at offset {pos} runs past the end of the file "
                                    f"({size} bytes)", self.path)
            raws.append(raw)
            pos += 8 + n
        self.pos = pos
        try:
            return [raw.decode("utf-8") for raw in raws]
        except UnicodeDecodeError:
            raise ArtifactError(f"corrupt: {what} is not UTF-8 text", self.path) from None


class GGUFFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.metadata: dict[str, Any] = {}
        try:
            with open_regular(self.path, ArtifactError) as f:
                cur = _Cursor(f, os.fstat(f.fileno()).st_size, self.path)
                infos = self._read_header(cur)
        except OSError as exc:
            raise ArtifactError(f"cannot read ({exc.strerror or exc})", self.path) from None
        alignment = self._alignment()
        data_start = -(-cur.pos // alignment) * alignment
        self.tensors: dict[str, GGUFTensor] = {}
        for name, shape, qtype, offset in infos:
            if offset % alignment:
                raise ArtifactError(f"corrupt: tensor {brief(name)} offset {offset} is not {alignment}-byte aligned",
                                    self.path)
            self._add_tensor(GGUFTensor(name, shape, qtype, data_start + offset), cur.size)

    def _read_header(self, cur: _Cursor) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType, int]]:
        if cur.read(4, "magic") != MAGIC:
            raise ArtifactError("not a GGUF file (bad magic)", self.path)
        (self.version,) = cur.unpack("<I", "version")
        if self.version not in VERSIONS:
            raise ArtifactError(f"unsupported GGUF version {self.version} (reads {VERSIONS})", self.path)
        n_tensors = cur.count("tensor count", MIN_TENSOR_INFO_BYTES)
        n_kv = cur.count("metadata count", MIN_KV_BYTES)
        for _ in range(n_kv):
            key = cur.string("metadata key")
            (vtype,) = cur.unpack("<I", f"type of {brief(key)}")
            self.metadata[key] = _value(cur, vtype, key)
        return [_tensor_info(cur) for _ in range(n_tensors)]

    def _alignment(self) -> int:
        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        power_of_two = isinstance(alignment, int) and alignment > 0 and not alignment & (alignment - 1)
        if isinstance(alignment, bool) or not power_of_two:
            raise ArtifactError(f"corrupt: general.alignment {brief(alignment)} is not a power of two", self.path)
        return alignment

    def _add_tensor(self, tensor: GGUFTensor, size: int) -> None:
        if tensor.name in self.tensors:
            raise ArtifactError(f"corrupt: tensor {brief(tensor.name)} appears twice", self.path)
        if tensor.offset + tensor.nbytes > size:
            raise ArtifactError(f"truncated or corrupt: tensor {brief(tensor.name)} spans bytes {tensor.offset} to "
                                f"{tensor.offset + tensor.nbytes} but the file has {size}", self.path)
        self.tensors[tensor.name] = tensor

    def raw(self, name: str) -> np.ndarray:
        """The tensor's stored bytes (uint8), memory-mapped."""
        t = self.tensors[name]
        return np.memmap(self.path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.nbytes,))


def _value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype == STRING:
        return cur.string(f"value of {brief(key)}")
    if vtype == ARRAY:
        (item_type,) = cur.unpack("<I", f"item type of {brief(key)}")
        if item_type == STRING:
            return cur.strings(cur.count(f"length of {brief(key)}", 8), f"item of {brief(key)}")
        if item_type not in NUMERIC:
            kind = "nested arrays are" if item_type == ARRAY else f"item type {item_type} is"
            raise ArtifactError(f"corrupt or unsupported: {brief(key)} is an array whose {kind} not supported",
                                cur.path)
        dtype = np.dtype(NUMERIC[item_type])
        count = cur.count(f"length of {brief(key)}", dtype.itemsize)
        return np.frombuffer(cur.read(count * dtype.itemsize, f"{brief(key)}"), dtype=dtype).tolist()
    if vtype not in NUMERIC:
        raise ArtifactError(f"corrupt: {brief(key)} has unknown value type {vtype}", cur.path)
    dtype = np.dtype(NUMERIC[vtype])
    return np.frombuffer(cur.read(dtype.itemsize, f"value of {brief(key)}"), dtype=dtype)[0].item()


def _tensor_info(cur: _Cursor) -> tuple[str, tuple[int, ...], GGMLQuantizationType, int]:
    name = cur.string("tensor name")
    (n_dims,) = cur.unpack("<I", f"dimension count of {brief(name)}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise ArtifactError(f"corrupt: tensor {brief(name)} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)",
                            cur.path)
    dims = cur.unpack(f"<{n_dims}Q", f"shape of {brief(name)}")
    qtype, offset = cur.unpack("<IQ", f"type and offset of {brief(name)}")
    try:
        qtype = GGMLQuantizationType(qtype)
    except ValueError:
        raise ArtifactError(f"corrupt or unsupported: tensor {brief(name)} has unknown ggml type {qtype}",
                            cur.path) from None
    if dims[0] % GGML_QUANT_SIZES[qtype][0]:
        raise ArtifactError(f"corrupt: tensor {brief(name)} rows of {dims[0]} are not whole {qtype.name} blocks",
                            cur.path)
    return name, tuple(reversed(dims)), qtype, offset
