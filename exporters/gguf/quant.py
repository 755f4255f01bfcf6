"""GGUF weight types: which tool produces each, and the type each tensor gets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, LlamaFileType as F
from gguf import quants

from ...toolkit.errors import QwdeployError
from .names import F32_ROLES


@dataclass(frozen=True)
class QuantType:
    name: str
    file_type: F
    tensor_type: T  # what bulk matrices become
    by_llama: bool  # K-quants come from llama.cpp's own quantizer


QUANT_TYPES = {
    q.name: q
    for q in (
        QuantType("f32", F.ALL_F32, T.F32, False),
        QuantType("f16", F.MOSTLY_F16, T.F16, False),
        QuantType("bf16", F.MOSTLY_BF16, T.BF16, False),
        QuantType("q8_0", F.MOSTLY_Q8_0, T.Q8_0, False),
        QuantType("q4_0", F.MOSTLY_Q4_0, T.Q4_0, False),
        QuantType("q4_1", F.MOSTLY_Q4_1, T.Q4_1, False),
        QuantType("q5_0", F.MOSTLY_Q5_0, T.Q5_0, False),
        QuantType("q5_1", F.MOSTLY_Q5_1, T.Q5_1, False),
        QuantType("q4_k_m", F.MOSTLY_Q4_K_M, T.Q4_K, True),
        QuantType("q5_k_m", F.MOSTLY_Q5_K_M, T.Q5_K, True),
        QuantType("q6_k", F.MOSTLY_Q6_K, T.Q6_K, True),
    )
}

FLOAT_TYPES = (T.F32, T.F16, T.BF16)
# Below 8 bits, embeddings and the LM head keep Q8_0: they set every logit (llama.cpp gives them Q6_K).
EDGE_ROLES = frozenset({"token_embd", "output"})


def quant_type(name: str) -> QuantType:
    key = name.lower()
    if key not in QUANT_TYPES:
        raise QwdeployError(f"unknown GGUF type '{name}'; choose one of: {', '.join(QUANT_TYPES)}")
    return QUANT_TYPES[key]


def tensor_type(role: str, shape: tuple[int, ...], wanted: T) -> T:
    """The type one tensor gets under a file type, with llama.cpp's exceptions."""
    if len(shape) == 1 or role in F32_ROLES:
        return T.F32
    if wanted in FLOAT_TYPES:
        return wanted
    if role in EDGE_ROLES and wanted != T.Q8_0:
        wanted = T.Q8_0
    block = GGML_QUANT_SIZES[wanted][0]
    if shape[-1] % block:
        return T.F16  # rows that do not split into blocks cannot be block-quantized
    return wanted


def nbytes(shape: tuple[int, ...], qtype: T) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    return rows * (shape[-1] // block) * size


def encode(rows: np.ndarray, qtype: T) -> np.ndarray:
    """float rows [n, k] → the bytes (or float array) GGUF stores for them."""
    if qtype == T.F32:
        return rows.astype(np.float32, copy=False)
    if qtype == T.F16:
        return rows.astype(np.float16)
    return quants.quantize(rows.astype(np.float32, copy=False), qtype)
