"""The GGUF file's tensors, decided from the spec before any weight is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from gguf import GGMLQuantizationType as T

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.finite import require_finite
from ...toolkit.tensors import ExpectedTensor
from .names import TENSOR_NAMES
from .quant import encode, nbytes, tensor_type

CHUNK_ELEMENTS = 1 << 23  # rows are encoded in slices of about this many values (32 MiB as f32)


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    role: str
    shape: tuple[int, ...]  # numpy order; experts stacked as [experts, rows, cols]
    qtype: T
    sources: tuple[str, ...]  # Hugging Face tensors, stacked along a new first axis when several

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.qtype)


def _planned(role: str, layer: int | None, shape: tuple[int, ...], sources: tuple[str, ...], wanted: T):
    # Hugging Face's shape as it is, as llama.cpp's converter writes it: the shared-expert gate [1, hidden]
    # stays 2-D (GGUF ne [hidden, 1]), which llama.cpp's loader accepts where it asks for [hidden].
    name = TENSOR_NAMES[role].format(layer=layer)
    return PlannedTensor(name, role, shape, tensor_type(role, shape, wanted), sources)


def plan_tensors(expected: list[ExpectedTensor], wanted: T) -> list[PlannedTensor]:
    """One entry per GGUF tensor: expert matrices of a layer become one stacked tensor."""
    planned: list[PlannedTensor] = []
    stacks: dict[tuple[int, str], list[ExpectedTensor]] = {}
    for tensor in expected:
        if tensor.expert is None:
            planned.append(_planned(tensor.role, tensor.layer, tensor.shape, (tensor.name,), wanted))
        else:
            stacks.setdefault((tensor.layer, tensor.role), []).append(tensor)
    for (layer, role), members in stacks.items():
        shape = (len(members), *members[0].shape)
        planned.append(_planned(role, layer, shape, tuple(m.name for m in members), wanted))
    order = {t.name: i for i, t in enumerate(planned)}
    # llama.cpp does not need an order, but grouping by layer keeps reads and writes local.
    return sorted(planned, key=lambda t: (_layer_of(t.name), order[t.name]))


def _layer_of(name: str) -> int:
    return int(name.split(".")[1]) if name.startswith("blk.") else (-1 if name == "token_embd.weight" else 1 << 30)


def encoded_chunks(ckpt: Checkpoint, tensor: PlannedTensor) -> Iterator[np.ndarray]:
    """The tensor's bytes in file order, a slice of rows at a time, never the whole tensor."""
    cols = tensor.shape[-1]
    step = max(1, CHUNK_ELEMENTS // cols)
    for source in tensor.sources:
        rows = ckpt.read(source).reshape(-1, cols)  # [rows, cols], memory-mapped
        row_bytes = cols * rows.dtype.itemsize
        for start in range(0, len(rows), step):
            block = np.asarray(rows[start:start + step], dtype=np.float32)  # [step, cols]
            yield encode(require_finite(block, source, ckpt.directory, start), tensor.qtype)
            ckpt.release(source, start * row_bytes, (start + step) * row_bytes)
