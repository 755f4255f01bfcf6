"""llama.cpp's names for Qwen architectures and tensors, as tables keyed by our roles."""

from __future__ import annotations

# model_type → llama.cpp architecture
ARCHITECTURES = {"qwen2": "qwen2", "qwen3": "qwen3", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe"}

# role (toolkit/tensors.py) → GGUF tensor name; expert roles name the per-layer stacked tensor.
TENSOR_NAMES = {
    "token_embd": "token_embd.weight",
    "output_norm": "output_norm.weight",
    "output": "output.weight",
    "attn_norm": "blk.{layer}.attn_norm.weight",
    "attn_q": "blk.{layer}.attn_q.weight",
    "attn_k": "blk.{layer}.attn_k.weight",
    "attn_v": "blk.{layer}.attn_v.weight",
    "attn_q_bias": "blk.{layer}.attn_q.bias",
    "attn_k_bias": "blk.{layer}.attn_k.bias",
    "attn_v_bias": "blk.{layer}.attn_v.bias",
    "attn_q_norm": "blk.{layer}.attn_q_norm.weight",
    "attn_k_norm": "blk.{layer}.attn_k_norm.weight",
    "attn_output": "blk.{layer}.attn_output.weight",
    "ffn_norm": "blk.{layer}.ffn_norm.weight",
    "ffn_gate": "blk.{layer}.ffn_gate.weight",
    "ffn_up": "blk.{layer}.ffn_up.weight",
    "ffn_down": "blk.{layer}.ffn_down.weight",
    "ffn_gate_inp": "blk.{layer}.ffn_gate_inp.weight",
    "ffn_gate_exp": "blk.{layer}.ffn_gate_exps.weight",
    "ffn_up_exp": "blk.{layer}.ffn_up_exps.weight",
    "ffn_down_exp": "blk.{layer}.ffn_down_exps.weight",
    "ffn_gate_shexp": "blk.{layer}.ffn_gate_shexp.weight",
    "ffn_up_shexp": "blk.{layer}.ffn_up_shexp.weight",
    "ffn_down_shexp": "blk.{layer}.ffn_down_shexp.weight",
    "ffn_gate_inp_shexp": "blk.{layer}.ffn_gate_inp_shexp.weight",
}

# Roles llama.cpp keeps in F32 whatever the file type: routers decide, they are not multiplied in bulk.
F32_ROLES = frozenset({"ffn_gate_inp", "ffn_gate_inp_shexp"})

# llama.cpp reads the shared-expert gate as a vector of n_embd.
SQUEEZED_ROLES = frozenset({"ffn_gate_inp_shexp"})
