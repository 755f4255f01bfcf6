"""The embedded default: real Qwen checkpoints with seeded random weights, built locally.

No model can be downloaded where qwdeploy is developed and tested, so it makes its own: the
configs transformers would write, real safetensors (sharded when large), the real Qwen tokenizer.
Weights are scaled so activations stay O(1) and logits are peaked, as in a trained model.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import atomic_directory
from .checkpoint import CAST_DTYPES, INDEX_FILE, SINGLE_FILE
from .safetensors_io import TensorPlan, write_safetensors
from .spec import ModelSpec, spec_from_config
from .tensors import ExpectedTensor, expected_tensors
from .tokenizer import ENDOFTEXT, IM_END, TOKEN_ID, write_tokenizer

VOCAB = 151936  # Qwen's padded embedding rows: every tokenizer id fits

# transformers_version: transformers 4.57 misreads configs without it as Mistral tokenizers.
_COMMON = {"transformers_version": "4.57.1", "vocab_size": VOCAB, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0}

# One row per (architecture, size): only the keys that differ from _COMMON.
PRESETS: dict[str, dict[str, dict]] = {
    "qwen2": {
        "tiny": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True),
        # Qwen2.5-0.5B's shape.
        "small": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                      num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True),
    },
    "qwen3": {
        # head_dim deliberately differs from hidden / heads, as in every Qwen3.
        "tiny": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=32, max_position_embeddings=4096, tie_word_embeddings=False),
        # Qwen3-0.6B's shape.
        "small": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                      num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True),
    },
    "qwen2moe": {
        "tiny": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False,
                     num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                     shared_expert_intermediate_size=96, norm_topk_prob=False, decoder_sparse_step=1),
        # Qwen1.5-MoE-A2.7B's layout, scaled down.
        "small": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=12, num_attention_heads=8,
                      num_key_value_heads=8, max_position_embeddings=8192, tie_word_embeddings=False,
                      num_experts=30, num_experts_per_tok=4, moe_intermediate_size=352,
                      shared_expert_intermediate_size=1408, norm_topk_prob=False, decoder_sparse_step=1),
    },
    "qwen3moe": {
        "tiny": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=32, max_position_embeddings=4096, tie_word_embeddings=False,
                     num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
                     decoder_sparse_step=1, mlp_only_layers=[]),
        # Qwen3-30B-A3B's layout, scaled down.
        "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=8,
                      num_key_value_heads=4, head_dim=64, max_position_embeddings=40960, tie_word_embeddings=False,
                      num_experts=32, num_experts_per_tok=4, moe_intermediate_size=192, norm_topk_prob=True,
                      decoder_sparse_step=1, mlp_only_layers=[]),
    },
}

FAMILY_CONFIG = {
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "use_sliding_window": False,
              "sliding_window": None, "max_window_layers": 21},
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
              "use_sliding_window": False, "sliding_window": None},
    "qwen2moe": {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "qkv_bias": True,
                 "use_sliding_window": False, "sliding_window": None, "mlp_only_layers": []},
    "qwen3moe": {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "attention_bias": False,
                 "use_sliding_window": False, "sliding_window": None},
}

ARCHS = tuple(PRESETS)
SIZES = ("tiny", "small")
STORAGE_DTYPES = ("bfloat16", "float16", "float32")
DEFAULT_SHARD_BYTES = 2 * 1024**3

_NORMS = {"attn_norm", "ffn_norm", "output_norm", "attn_q_norm", "attn_k_norm"}
_BIASES = {"attn_q_bias", "attn_k_bias", "attn_v_bias"}


def demo_config(arch: str, size: str, dtype: str = "bfloat16") -> dict:
    """config.json contents for a preset, as transformers itself would accept them."""
    config = {**FAMILY_CONFIG[arch], **_COMMON, **PRESETS[arch][size]}
    config.update(torch_dtype=dtype, bos_token_id=TOKEN_ID[ENDOFTEXT], eos_token_id=TOKEN_ID[IM_END])
    return config


def _weight(tensor: ExpectedTensor, spec: ModelSpec, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(tensor.name.encode())])
    values = rng.standard_normal(tensor.shape, dtype=np.float32)
    if tensor.role in _NORMS:
        return 1.0 + 0.1 * values
    if tensor.role in _BIASES:
        return 0.1 * values
    if tensor.role in ("token_embd", "output"):
        # logits = rms-normalised hidden · rows: std ~3, peaked like a trained model's.
        return values * (3.0 / math.sqrt(spec.hidden_size))
    return values / math.sqrt(tensor.shape[-1])  # Linear: unit-variance outputs


def _shards(tensors: list[ExpectedTensor], dtype: np.dtype, max_bytes: int) -> list[list[ExpectedTensor]]:
    shards: list[list[ExpectedTensor]] = [[]]
    size = 0
    for tensor in tensors:
        nbytes = tensor.numel * dtype.itemsize
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += nbytes
    return shards


def write_weights(directory: Path, spec: ModelSpec, dtype: str, seed: int, max_shard_bytes: int,
                  progress=None) -> None:
    """Stream seeded weights into one or more safetensors files (with an index when sharded)."""
    np_dtype = np.dtype(CAST_DTYPES[dtype])
    shards = _shards(list(expected_tensors(spec)), np_dtype, max_shard_bytes)
    names = [SINGLE_FILE] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
    ]
    weight_map, total = {}, 0

    def arrays(shard: list[ExpectedTensor]) -> Iterator[np.ndarray]:
        for tensor in shard:
            yield _weight(tensor, spec, seed).astype(np_dtype)
            if progress is not None:
                progress(tensor.numel * np_dtype.itemsize)

    for name, shard in zip(names, shards):
        plans = [TensorPlan(t.name, np_dtype, t.shape) for t in shard]
        write_safetensors(directory / name, plans, arrays(shard), metadata={"format": "pt"})
        weight_map.update({t.name: name for t in shard})
        total += sum(p.nbytes for p in plans)
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


def build_demo_checkpoint(
    out: Path,
    arch: str = "qwen3",
    size: str = "tiny",
    dtype: str = "bfloat16",
    seed: int = 0,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    force: bool = False,
    progress=None,
) -> Path:
    """Write a complete checkpoint directory at `out` (atomically) and return it."""
    config = demo_config(arch, size, dtype)
    spec = spec_from_config(config)
    with atomic_directory(out, force=force) as tmp:
        write_metadata(tmp, config)
        write_weights(tmp, spec, dtype, seed, max_shard_bytes, progress)
    return out


def write_metadata(directory: Path, config: dict) -> None:
    """Everything of a checkpoint but its weights: config, generation config, the Qwen tokenizer."""
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": TOKEN_ID[ENDOFTEXT], "eos_token_id": [TOKEN_ID[IM_END], TOKEN_ID[ENDOFTEXT]],
                  "pad_token_id": TOKEN_ID[ENDOFTEXT], "do_sample": False}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    write_tokenizer(directory, config["max_position_embeddings"])
