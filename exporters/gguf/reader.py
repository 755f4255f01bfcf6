"""A fast GGUF reader: metadata, tensor table, raw tensor bytes (memory-mapped).

gguf-py's GGUFReader wraps every string of a 150k-token vocabulary in its own numpy view and
takes seconds per file; reading arrays in bulk takes milliseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ...toolkit.errors import QwdeployError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value type id → numpy dtype, for scalars and numeric arrays.
NUMERIC = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
           7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (GGUF stores ne0 first)
    qtype: GGMLQuantizationType
    offset: int  # absolute, in the file

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return int(np.prod(self.shape[:-1], dtype=np.int64)) * (self.shape[-1] // block) * size


class GGUFFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            if f.read(4) != MAGIC:
                raise QwdeployError("not a GGUF file (bad magic)", self.path)
            self.version, n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
            self.metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = _string(f)
                (vtype,) = struct.unpack("<I", f.read(4))
                self.metadata[key] = _value(f, vtype)
            infos = [_tensor_info(f) for _ in range(n_tensors)]
            alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
            data_start = -(-f.tell() // alignment) * alignment
        self.tensors = {name: GGUFTensor(name, shape, qtype, data_start + offset) for name, shape, qtype, offset in infos}

    def raw(self, name: str) -> np.ndarray:
        """The tensor's stored bytes (uint8), memory-mapped."""
        t = self.tensors[name]
        return np.memmap(self.path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.nbytes,))


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8")


def _value(f: BinaryIO, vtype: int) -> Any:
    if vtype == STRING:
        return _string(f)
    if vtype == ARRAY:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type == STRING:
            return [_string(f) for _ in range(count)]
        dtype = np.dtype(NUMERIC[item_type])
        return np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype).tolist()
    dtype = np.dtype(NUMERIC[vtype])
    return np.frombuffer(f.read(dtype.itemsize), dtype=dtype)[0].item()


def _tensor_info(f: BinaryIO) -> tuple[str, tuple[int, ...], GGMLQuantizationType, int]:
    name = _string(f)
    (n_dims,) = struct.unpack("<I", f.read(4))
    dims = struct.unpack(f"<{n_dims}Q", f.read(8 * n_dims))
    qtype, offset = struct.unpack("<IQ", f.read(12))
    return name, tuple(reversed(dims)), GGMLQuantizationType(qtype), offset
