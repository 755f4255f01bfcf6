from __future__ import annotations

import pytest

from qwdeploy.toolkit.demo import demo_config
from qwdeploy.toolkit.errors import CheckpointError, UnsupportedModelError
from qwdeploy.toolkit.spec import SLIDING_ATTENTION, SUPPORTED_ARCHITECTURES, spec_from_config
from qwdeploy.toolkit.tensors import active_parameter_count, expected_tensors, parameter_count


def test_qwen2_small_is_qwen25_05b():
    spec = spec_from_config(demo_config("qwen2", "small"))
    assert (spec.hidden_size, spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.head_dim) == (896, 24, 14, 2, 64)
    assert spec.attention_bias and not spec.qk_norm and spec.tie_word_embeddings and spec.moe is None
    assert parameter_count(spec) == 494_032_768  # Qwen2.5-0.5B's published count


def test_qwen3_head_dim_is_explicit():
    spec = spec_from_config(demo_config("qwen3", "small"))
    assert spec.head_dim == 128 and spec.hidden_size // spec.num_heads == 64
    assert spec.qk_norm and not spec.attention_bias
    assert parameter_count(spec) == 596_049_920  # Qwen3-0.6B's published count


def test_moe_layers_follow_transformers_rule():
    spec = spec_from_config({**demo_config("qwen3moe", "tiny"), "mlp_only_layers": [1]})
    assert [spec.is_moe_layer(i) for i in range(3)] == [True, False, True]
    assert spec.moe.norm_topk_prob and spec.moe.shared_expert_intermediate_size == 0
    config = {**demo_config("qwen2moe", "tiny"), "num_hidden_layers": 4, "decoder_sparse_step": 2}
    spec = spec_from_config(config)
    assert [spec.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    roles = {t.role for t in expected_tensors(spec) if t.layer == 1}
    assert {"ffn_gate_inp", "ffn_gate_exp", "ffn_gate_shexp", "ffn_gate_inp_shexp"} <= roles
    assert "ffn_gate" not in roles
    assert active_parameter_count(spec) < parameter_count(spec)


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}},
        {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}},
        {"rope_theta": None, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
                                                 "original_max_position_embeddings": 32768}},
    ],
)
def test_rope_scaling_in_every_spelling(scaling):
    spec = spec_from_config({**demo_config("qwen2", "tiny"), **scaling})
    assert spec.rope_theta == 1e6
    assert spec.rope_scaling.type == "yarn" and spec.rope_scaling.factor == 4.0
    assert spec.rope_scaling.original_max_position_embeddings == 32768


def test_sliding_window_layers():
    config = {**demo_config("qwen2", "tiny"), "use_sliding_window": True, "sliding_window": 128,
              "max_window_layers": 1}
    spec = spec_from_config(config)
    assert spec.sliding_window == 128 and spec.layer_types[1] == SLIDING_ATTENTION
    assert spec_from_config(demo_config("qwen2", "tiny")).sliding_window is None


def test_unsupported_architecture_lists_supported():
    with pytest.raises(UnsupportedModelError) as exc:
        spec_from_config({**demo_config("qwen2", "tiny"), "architectures": ["LlamaForCausalLM"]})
    message = str(exc.value)
    assert "LlamaForCausalLM" in message
    assert all(a in message for a in SUPPORTED_ARCHITECTURES)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_size": None}, "missing 'hidden_size'"),
        ({"hidden_size": "64"}, "must be int"),
        ({"num_key_value_heads": 3}, "not a multiple"),
        ({"num_hidden_layers": 0}, "must be positive"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"layer_types": ["full_attention"]}, "layer_types"),
    ],
)
def test_bad_config_values(change, message):
    with pytest.raises((CheckpointError, UnsupportedModelError), match=message):
        spec_from_config({**demo_config("qwen3", "tiny"), **change})


def test_moe_config_checks():
    with pytest.raises(CheckpointError, match="exceeds"):
        spec_from_config({**demo_config("qwen3moe", "tiny"), "num_experts_per_tok": 9})
    with pytest.raises(CheckpointError, match="shared_expert_intermediate_size"):
        spec_from_config({**demo_config("qwen2moe", "tiny"), "shared_expert_intermediate_size": None})
