"""GGUF key/values: general.*, the hyper-parameters llama.cpp reads for each Qwen architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gguf import GGML_QUANT_VERSION, GGUFValueType as V
from gguf.constants import Keys

from ...toolkit import __version__
from ...toolkit.spec import ModelSpec
from .quant import QuantType

KeyValue = tuple[str, Any, V]

# (key template, value from the spec, GGUF type, applies?) — one row per key llama.cpp reads.
MODEL_KEYS: tuple[tuple[str, Callable[[ModelSpec], Any], V, Callable[[ModelSpec], bool]], ...] = (
    (Keys.LLM.CONTEXT_LENGTH, lambda s: s.max_position_embeddings, V.UINT32, lambda s: True),
    (Keys.LLM.EMBEDDING_LENGTH, lambda s: s.hidden_size, V.UINT32, lambda s: True),
    (Keys.LLM.BLOCK_COUNT, lambda s: s.num_layers, V.UINT32, lambda s: True),
    (Keys.LLM.FEED_FORWARD_LENGTH, lambda s: s.intermediate_size, V.UINT32, lambda s: True),
    (Keys.Attention.HEAD_COUNT, lambda s: s.num_heads, V.UINT32, lambda s: True),
    (Keys.Attention.HEAD_COUNT_KV, lambda s: s.num_kv_heads, V.UINT32, lambda s: True),
    (Keys.Attention.KEY_LENGTH, lambda s: s.head_dim, V.UINT32, lambda s: True),
    (Keys.Attention.VALUE_LENGTH, lambda s: s.head_dim, V.UINT32, lambda s: True),
    (Keys.Attention.LAYERNORM_RMS_EPS, lambda s: s.rms_norm_eps, V.FLOAT32, lambda s: True),
    (Keys.Rope.FREQ_BASE, lambda s: s.rope_theta, V.FLOAT32, lambda s: True),
    (Keys.Rope.SCALING_TYPE, lambda s: s.rope_scaling.type, V.STRING, lambda s: s.rope_scaling is not None),
    (Keys.Rope.SCALING_FACTOR, lambda s: s.rope_scaling.factor, V.FLOAT32, lambda s: s.rope_scaling is not None),
    (Keys.Rope.SCALING_ORIG_CTX_LEN, lambda s: s.rope_scaling.original_max_position_embeddings, V.UINT32,
     lambda s: s.rope_scaling is not None and s.rope_scaling.original_max_position_embeddings is not None),
    (Keys.Rope.SCALING_YARN_BETA_FAST, lambda s: s.rope_scaling.params["beta_fast"], V.FLOAT32,
     lambda s: s.rope_scaling is not None and "beta_fast" in s.rope_scaling.params),
    (Keys.Rope.SCALING_YARN_BETA_SLOW, lambda s: s.rope_scaling.params["beta_slow"], V.FLOAT32,
     lambda s: s.rope_scaling is not None and "beta_slow" in s.rope_scaling.params),
    (Keys.LLM.EXPERT_COUNT, lambda s: s.moe.num_experts, V.UINT32, lambda s: s.moe is not None),
    (Keys.LLM.EXPERT_USED_COUNT, lambda s: s.moe.top_k, V.UINT32, lambda s: s.moe is not None),
    (Keys.LLM.EXPERT_FEED_FORWARD_LENGTH, lambda s: s.moe.moe_intermediate_size, V.UINT32,
     lambda s: s.moe is not None),
    (Keys.LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH, lambda s: s.moe.shared_expert_intermediate_size, V.UINT32,
     lambda s: s.moe is not None and s.moe.shared_expert_intermediate_size > 0),
)


def model_metadata(spec: ModelSpec, arch: str) -> list[KeyValue]:
    return [(key.format(arch=arch), value(spec), vtype) for key, value, vtype, applies in MODEL_KEYS if applies(spec)]


def general_metadata(source: Path, quant: QuantType) -> list[KeyValue]:
    return [
        (Keys.General.TYPE, "model", V.STRING),
        (Keys.General.NAME, source.name, V.STRING),
        (Keys.General.FILE_TYPE, int(quant.file_type), V.UINT32),
        (Keys.General.QUANTIZATION_VERSION, GGML_QUANT_VERSION, V.UINT32),
        (Keys.General.SOURCE_URL, source.resolve().as_uri(), V.STRING),
        (Keys.General.QUANTIZED_BY, f"qwdeploy {__version__}", V.STRING),
    ]
