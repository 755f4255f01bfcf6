"""The tensors a ModelSpec implies: Hugging Face names, shapes and roles, as tables.

Exporters map a *role* (``attn_q``, ``ffn_gate_exp``, ...) to their own naming; the Hugging Face
name templates and shape rules live here once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

from .spec import ModelSpec

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Role:
    name: str
    hf_template: str  # formatted with layer= and expert=
    shape: Callable[[ModelSpec], Shape]
    applies: Callable[[ModelSpec, int], bool] = lambda spec, layer: True


@dataclass(frozen=True)
class ExpectedTensor:
    name: str
    shape: Shape
    role: str
    layer: int | None = None
    expert: int | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _dense(spec: ModelSpec, layer: int) -> bool:
    return not spec.is_moe_layer(layer)


def _sparse(spec: ModelSpec, layer: int) -> bool:
    return spec.is_moe_layer(layer)


def _shared(spec: ModelSpec, layer: int) -> bool:
    return spec.is_moe_layer(layer) and spec.family.shared_expert


def _bias(spec: ModelSpec, layer: int) -> bool:
    return spec.attention_bias


def _qk_norm(spec: ModelSpec, layer: int) -> bool:
    return spec.qk_norm


GLOBAL_ROLES = (
    Role("token_embd", "model.embed_tokens.weight", lambda s: (s.vocab_size, s.hidden_size)),
    Role("output_norm", "model.norm.weight", lambda s: (s.hidden_size,)),
    Role("output", "lm_head.weight", lambda s: (s.vocab_size, s.hidden_size)),
)

LAYER = "model.layers.{layer}."
LAYER_ROLES = (
    Role("attn_norm", LAYER + "input_layernorm.weight", lambda s: (s.hidden_size,)),
    Role("attn_q", LAYER + "self_attn.q_proj.weight", lambda s: (s.q_size, s.hidden_size)),
    Role("attn_k", LAYER + "self_attn.k_proj.weight", lambda s: (s.kv_size, s.hidden_size)),
    Role("attn_v", LAYER + "self_attn.v_proj.weight", lambda s: (s.kv_size, s.hidden_size)),
    Role("attn_q_bias", LAYER + "self_attn.q_proj.bias", lambda s: (s.q_size,), _bias),
    Role("attn_k_bias", LAYER + "self_attn.k_proj.bias", lambda s: (s.kv_size,), _bias),
    Role("attn_v_bias", LAYER + "self_attn.v_proj.bias", lambda s: (s.kv_size,), _bias),
    Role("attn_q_norm", LAYER + "self_attn.q_norm.weight", lambda s: (s.head_dim,), _qk_norm),
    Role("attn_k_norm", LAYER + "self_attn.k_norm.weight", lambda s: (s.head_dim,), _qk_norm),
    Role("attn_output", LAYER + "self_attn.o_proj.weight", lambda s: (s.hidden_size, s.q_size)),
    Role("ffn_norm", LAYER + "post_attention_layernorm.weight", lambda s: (s.hidden_size,)),
    Role("ffn_gate", LAYER + "mlp.gate_proj.weight", lambda s: (s.intermediate_size, s.hidden_size), _dense),
    Role("ffn_up", LAYER + "mlp.up_proj.weight", lambda s: (s.intermediate_size, s.hidden_size), _dense),
    Role("ffn_down", LAYER + "mlp.down_proj.weight", lambda s: (s.hidden_size, s.intermediate_size), _dense),
    Role("ffn_gate_inp", LAYER + "mlp.gate.weight", lambda s: (s.moe.num_experts, s.hidden_size), _sparse),
    Role(
        "ffn_gate_shexp",
        LAYER + "mlp.shared_expert.gate_proj.weight",
        lambda s: (s.moe.shared_expert_intermediate_size, s.hidden_size),
        _shared,
    ),
    Role(
        "ffn_up_shexp",
        LAYER + "mlp.shared_expert.up_proj.weight",
        lambda s: (s.moe.shared_expert_intermediate_size, s.hidden_size),
        _shared,
    ),
    Role(
        "ffn_down_shexp",
        LAYER + "mlp.shared_expert.down_proj.weight",
        lambda s: (s.hidden_size, s.moe.shared_expert_intermediate_size),
        _shared,
    ),
    Role("ffn_gate_inp_shexp", LAYER + "mlp.shared_expert_gate.weight", lambda s: (1, s.hidden_size), _shared),
)

EXPERT = LAYER + "mlp.experts.{expert}."
EXPERT_ROLES = (
    Role("ffn_gate_exp", EXPERT + "gate_proj.weight", lambda s: (s.moe.moe_intermediate_size, s.hidden_size)),
    Role("ffn_up_exp", EXPERT + "up_proj.weight", lambda s: (s.moe.moe_intermediate_size, s.hidden_size)),
    Role("ffn_down_exp", EXPERT + "down_proj.weight", lambda s: (s.hidden_size, s.moe.moe_intermediate_size)),
)

# Tensors some checkpoints carry that no export needs.
IGNORABLE = (re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq"),)

TIED_OUTPUT = "lm_head.weight"


def expected_tensors(spec: ModelSpec) -> Iterator[ExpectedTensor]:
    """Every tensor the checkpoint must hold, in export order (globals, then layer by layer)."""
    for role in GLOBAL_ROLES:
        if role.name == "output" and spec.tie_word_embeddings:
            continue
        yield ExpectedTensor(role.hf_template, role.shape(spec), role.name)
    for layer in range(spec.num_layers):
        for role in LAYER_ROLES:
            if role.applies(spec, layer):
                yield ExpectedTensor(role.hf_template.format(layer=layer), role.shape(spec), role.name, layer)
        if spec.is_moe_layer(layer):
            for expert in range(spec.moe.num_experts):
                for role in EXPERT_ROLES:
                    name = role.hf_template.format(layer=layer, expert=expert)
                    yield ExpectedTensor(name, role.shape(spec), role.name, layer, expert)


def parameter_count(spec: ModelSpec) -> int:
    return sum(t.numel for t in expected_tensors(spec))


def active_parameter_count(spec: ModelSpec) -> int:
    """Parameters touched per token: all but the experts the router does not pick."""
    if spec.moe is None:
        return parameter_count(spec)
    inactive_share = 1 - spec.moe.top_k / spec.moe.num_experts
    expert_params = sum(t.numel for t in expected_tensors(spec) if t.expert is not None)
    return parameter_count(spec) - round(expert_params * inactive_share)
