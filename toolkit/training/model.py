"""The trained demo model's config, and how its few used token rows become Qwen's full vocabulary.

Training sees only the ~150 token ids the grammar uses, plus one shared "sink" row that stands for all
other 151,790. In the written checkpoint every unused id gets the sink row (in the embedding and the
LM head), so their logits are equal; training adds log(number of unused ids) to the sink's logit, which
makes the small softmax exactly the full-vocabulary softmax of the written model. The loss is therefore
the full-vocabulary loss, and training itself pushes the unused tokens below the used ones.
"""

from __future__ import annotations

import math

import numpy as np

from ..demo import VOCAB, demo_config

TRAINED_ARCHS = ("qwen2", "qwen3")
TRAINED_LENGTH = 512  # tokens per training sequence
MAX_POSITIONS = 4 * TRAINED_LENGTH
# Applied while training too, so config.json describes exactly the function that was trained. YaRN rather
# than linear: it leaves the highest rope frequencies unscaled, and those tell neighbouring positions apart.
ROPE_SCALING = {"rope_type": "yarn", "factor": MAX_POSITIONS / TRAINED_LENGTH,
                "original_max_position_embeddings": TRAINED_LENGTH}
# Every row length is a multiple of 32, so Q4_0 and Q8_0 blocks tile every tensor.
SHAPE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS)
VOCAB_ROWS = ("model.embed_tokens.weight", "lm_head.weight")


def trained_config(arch: str) -> dict:
    """config.json of the trained checkpoint: the tiny preset's family keys, a larger shape, f32 storage."""
    if arch not in TRAINED_ARCHS:
        raise ValueError(f"only {', '.join(TRAINED_ARCHS)} can be trained, not {arch!r}")
    config = demo_config(arch, "tiny", "float32")
    config.update(SHAPE, rope_scaling=dict(ROPE_SCALING))
    if arch == "qwen3":
        config["head_dim"] = 32
    return config


def compact_model(config: dict, rows: int):
    """transformers' own model for `config`, with `rows` vocabulary rows (used ids, then the sink)."""
    import torch
    import transformers

    hf_config = transformers.CONFIG_MAPPING[config["model_type"]](**{**config, "vocab_size": rows})
    return transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa",
                                                          dtype=torch.float32)


def sink_offset(used: int) -> float:
    """Added to the sink's logit: it stands for this many identical rows."""
    return math.log(VOCAB - used)


def expand_vocabulary(state: dict[str, np.ndarray], used_ids: list[int]) -> dict[str, np.ndarray]:
    """Full-vocabulary tensors from the compact ones: used ids get their rows, all others the sink's."""
    rows = np.full(VOCAB, len(used_ids), dtype=np.int64)  # [vocab] → compact row
    rows[used_ids] = np.arange(len(used_ids))
    return {name: value[rows] if name in VOCAB_ROWS else value for name, value in state.items()}
