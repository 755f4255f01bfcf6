"""The GGUF file's tensors, decided from the spec before any weight is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.finite import require_finite
from ...toolkit.tensors import ExpectedTensor
from .names import F32_ROLES, TENSOR_NAMES
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


# llama.cpp's quantizer for its K-quant file types (llama_tensor_get_type, read 2026-12): the LM head gets
# Q6_K, attn_v and ffn_down get Q6_K in the layers use_more_bits picks (M variants), and a row that does not
# split into 256-value super-blocks takes the fallback type.
K_FALLBACK = {T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}
MORE_BITS_ROLES = ("attn_v", "ffn_down", "ffn_down_exp", "ffn_down_shexp")


def _use_more_bits(layer: int, layers: int) -> bool:
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def _llama_type(tensor: PlannedTensor, wanted: T, layers: int, head: str) -> T:
    if len(tensor.shape) == 1 or tensor.role in F32_ROLES:
        return T.F32
    qtype = wanted
    if tensor.name == head:
        qtype = T.Q6_K
    elif tensor.role in MORE_BITS_ROLES and wanted != T.Q6_K and _use_more_bits(_layer_of(tensor.name), layers):
        qtype = T.Q6_K
    return K_FALLBACK[qtype] if tensor.shape[-1] % GGML_QUANT_SIZES[qtype][0] else qtype


def estimate_bytes(expected: list[ExpectedTensor], wanted: T, by_llama: bool, layers: int) -> int:
    """The file's tensor bytes for a type, before any weight is read: exact for the types qwdeploy writes,
    llama.cpp's per-tensor rules for the K-quants it makes."""
    planned = plan_tensors(expected, T.F32 if by_llama else wanted)
    if not by_llama:
        return sum(t.nbytes for t in planned)
    names = {t.name for t in planned}
    head = "output.weight" if "output.weight" in names else "token_embd.weight"  # tied: the embedding is the head
    return sum(nbytes(t.shape, _llama_type(t, wanted, layers, head)) for t in planned)
