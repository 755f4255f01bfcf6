"""llama.cpp's names for Qwen architectures and tensors, taken from gguf-py's tables and keyed by our roles.

gguf-py ships llama.cpp's own name tables, so a rename upstream reaches us with the gguf package
instead of through a second, hand-typed copy.
"""

from __future__ import annotations

from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, TENSOR_NAMES as GGUF_TENSOR_NAMES
from gguf import MODEL_TENSOR as M

# model_type → llama.cpp architecture (gguf.MODEL_TENSORS[arch] lists the tensors it may hold; tests check ours)
MODEL_ARCHS = {"qwen2": MODEL_ARCH.QWEN2, "qwen3": MODEL_ARCH.QWEN3, "qwen2_moe": MODEL_ARCH.QWEN2MOE,
               "qwen3_moe": MODEL_ARCH.QWEN3MOE}
# model_type → the architecture name GGUF files carry
ARCHITECTURES = {model_type: MODEL_ARCH_NAMES[arch] for model_type, arch in MODEL_ARCHS.items()}

# role (toolkit/tensors.py) → (llama.cpp tensor, suffix); expert roles name the per-layer stacked tensor.
ROLES = {
    "token_embd": (M.TOKEN_EMBD, "weight"),
    "output_norm": (M.OUTPUT_NORM, "weight"),
    "output": (M.OUTPUT, "weight"),
    "attn_norm": (M.ATTN_NORM, "weight"),
    "attn_q": (M.ATTN_Q, "weight"),
    "attn_k": (M.ATTN_K, "weight"),
    "attn_v": (M.ATTN_V, "weight"),
    "attn_q_bias": (M.ATTN_Q, "bias"),
    "attn_k_bias": (M.ATTN_K, "bias"),
    "attn_v_bias": (M.ATTN_V, "bias"),
    "attn_q_norm": (M.ATTN_Q_NORM, "weight"),
    "attn_k_norm": (M.ATTN_K_NORM, "weight"),
    "attn_output": (M.ATTN_OUT, "weight"),
    "ffn_norm": (M.FFN_NORM, "weight"),
    "ffn_gate": (M.FFN_GATE, "weight"),
    "ffn_up": (M.FFN_UP, "weight"),
    "ffn_down": (M.FFN_DOWN, "weight"),
    "ffn_gate_inp": (M.FFN_GATE_INP, "weight"),
    "ffn_gate_exp": (M.FFN_GATE_EXP, "weight"),
    "ffn_up_exp": (M.FFN_UP_EXP, "weight"),
    "ffn_down_exp": (M.FFN_DOWN_EXP, "weight"),
    "ffn_gate_shexp": (M.FFN_GATE_SHEXP, "weight"),
    "ffn_up_shexp": (M.FFN_UP_SHEXP, "weight"),
    "ffn_down_shexp": (M.FFN_DOWN_SHEXP, "weight"),
    "ffn_gate_inp_shexp": (M.FFN_GATE_INP_SHEXP, "weight"),
}

# role → GGUF tensor name, formatted with layer= ("blk.{layer}.attn_q.weight").
TENSOR_NAMES = {role: f"{GGUF_TENSOR_NAMES[tensor].format(bid='{layer}')}.{suffix}"
                for role, (tensor, suffix) in ROLES.items()}

# Roles llama.cpp keeps in F32 whatever the file type: routers decide, they are not multiplied in bulk.
F32_ROLES = frozenset({"ffn_gate_inp", "ffn_gate_inp_shexp"})

