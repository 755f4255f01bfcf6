"""Stream a GGUF file: header, key/values and tensor infos first, then each tensor's bytes in turn."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from gguf import GGUFValueType as V, GGUFWriter

from ...toolkit.checksums import GGUF_KEY, PLACEHOLDER, HashingWriter
from .metadata import KeyValue
from .plan import PlannedTensor


def write_gguf(
    path: Path,
    arch: str,
    metadata: list[KeyValue],
    tensors: list[PlannedTensor],
    chunks: Callable[[PlannedTensor], Iterator[np.ndarray]],
    progress: Callable[[int], object] = lambda n: None,
) -> None:
    """`chunks(t)` yields t's encoded bytes in order; their total must equal t.nbytes.

    The file's sha256 is computed as it is written and stored in its GGUF_KEY (see toolkit/checksums.py)."""
    writer = GGUFWriter(path=None, arch=arch)
    writer.add_key_value(GGUF_KEY, PLACEHOLDER.decode(), V.STRING)  # early, so readers find it in the first bytes
    for key, value, vtype in metadata:
        if vtype == V.ARRAY:
            writer.add_array(key, value)
        else:
            writer.add_key_value(key, value, vtype)
    for t in tensors:
        writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
    writer.open_output_file(path)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    out = HashingWriter(writer.fout[0], path)
    try:
        for t in tensors:
            writer.write_padding(out, out.tell())
            written = _write_all(out, chunks(t), progress)
            if written != t.nbytes:
                raise AssertionError(f"{t.name}: planned {t.nbytes} bytes, encoded {written}")
            writer.write_padding(out, written)
        out.seal()
    finally:
        writer.close()


def _write_all(out, parts: Iterable[np.ndarray], progress: Callable[[int], object]) -> int:
    total = 0
    for part in parts:
        out.write(np.ascontiguousarray(part).data)
        total += part.nbytes
        progress(part.nbytes)
    return total
