"""Untrusted config.json semantics: types, ranges, absurd sizes: each loads or is refused with one
QwdeployError line naming the file and the problem, never another exception, a hang or an allocation sized
by a lie."""

from __future__ import annotations

import math

import pytest

from qwdeploy.toolkit.demo import demo_config
from qwdeploy.toolkit.errors import CheckpointError, QwdeployError
from qwdeploy.toolkit.spec import spec_from_config

from untrusted import refused


@pytest.mark.parametrize("arch, change, problem", [
    ("qwen3", {"eos_token_id": "abc"}, "'eos_token_id' must be a token id"),
    ("qwen3", {"eos_token_id": [151645, "x"]}, "'eos_token_id' must be a token id"),
    ("qwen3", {"eos_token_id": -1}, "'eos_token_id' must be a token id"),
    ("qwen3", {"bos_token_id": "151643"}, "'bos_token_id' must be a token id"),
    ("qwen3", {"bos_token_id": [1, 2]}, "'bos_token_id' must be a token id"),
    ("qwen3", {"rope_theta": "1e6"}, "'rope_theta' must be a positive number"),
    ("qwen3", {"rope_theta": -1.0}, "'rope_theta' must be a positive number"),
    ("qwen3", {"rope_theta": math.nan}, "'rope_theta' must be a positive number"),
    ("qwen3", {"rope_theta": 10**400}, "'rope_theta' must be a positive number"),
    ("qwen3", {"rms_norm_eps": -1e-6}, "'rms_norm_eps' must be a positive number"),
    ("qwen3", {"rms_norm_eps": 0}, "'rms_norm_eps' must be a positive number"),
    ("qwen3", {"rms_norm_eps": math.nan}, "'rms_norm_eps' must be a positive number"),
    ("qwen3", {"rms_norm_eps": math.inf}, "'rms_norm_eps' must be a positive number"),
    ("qwen3", {"tie_word_embeddings": "false"}, "'tie_word_embeddings' must be true or false"),
    ("qwen3", {"attention_bias": 1}, "'attention_bias' must be true or false"),
    ("qwen3", {"rope_scaling": {"type": "yarn", "factor": "4"}}, "'rope_scaling.factor' must be a positive"),
    ("qwen3", {"rope_scaling": {"type": "yarn", "factor": 4.0, "beta_fast": "32"}}, "'rope_scaling.beta_fast'"),
    ("qwen3", {"rope_scaling": {"type": ["yarn"], "factor": 4.0}}, "'rope_scaling' type must be a string"),
    ("qwen3", {"rope_scaling": "yarn"}, "'rope_scaling' must be an object"),
    ("qwen3", {"rope_parameters": 5}, "'rope_parameters' must be an object"),
    ("qwen3", {"max_window_layers": "1", "use_sliding_window": True, "sliding_window": 8}, "'max_window_layers'"),
    ("qwen3", {"sliding_window": "128", "use_sliding_window": True}, "'sliding_window' must be an integer"),
    ("qwen3", {"sliding_window": [128]}, "'sliding_window' must be an integer"),
    ("qwen3", {"use_sliding_window": "yes", "sliding_window": 8}, "'use_sliding_window' must be true or false"),
    ("qwen3", {"torch_dtype": ["bfloat16"]}, "'torch_dtype' must be a string"),
    ("qwen3", {"layer_types": "full_attention"}, "'layer_types' must list 2"),
    ("qwen3", {"layer_types": 2}, "'layer_types' must list 2"),
    ("qwen3", {"architectures": [["Qwen3ForCausalLM"]]}, "exactly one architecture"),
    ("qwen3moe", {"mlp_only_layers": [True]}, "'mlp_only_layers'"),
    ("qwen3moe", {"norm_topk_prob": "true"}, "'norm_topk_prob' must be true or false"),
    ("qwen2", {"num_attention_heads": 6, "num_key_value_heads": 2},
     r"'hidden_size' \(64\) is not divisible by 'num_attention_heads' \(6\) and no 'head_dim' is given"),
])
def test_config_values_of_the_wrong_type(tmp_path, arch, change, problem):
    source = tmp_path / "config.json"
    refused(lambda: spec_from_config({**demo_config(arch, "tiny"), **change}, source), QwdeployError, source, problem)


@pytest.mark.parametrize("arch, change, problem", [
    ("qwen3", {"max_position_embeddings": 1e30}, "'max_position_embeddings' must be int"),
    ("qwen3", {"max_position_embeddings": 10**30}, "'max_position_embeddings' is 10+, beyond the 2147483647"),
    ("qwen3", {"max_position_embeddings": 2**31}, "beyond the 2147483647"),
    ("qwen3", {"num_hidden_layers": 10**6}, "'num_hidden_layers' is 1000000, beyond the 1024"),
    ("qwen3", {"hidden_size": 2**20}, "'hidden_size' is 1048576, beyond the 65536"),
    ("qwen3", {"intermediate_size": 10**9}, "'intermediate_size' is 1000000000, beyond the 262144"),
    ("qwen3", {"vocab_size": 2**40}, "'vocab_size' is 1099511627776, beyond the 4194304"),
    ("qwen3", {"num_attention_heads": 2**20, "num_key_value_heads": 1}, "'num_attention_heads' .* beyond the 1024"),
    ("qwen3", {"head_dim": 10**6}, "'head_dim' is 1000000, beyond the 1024"),
    ("qwen3", {"eos_token_id": 2**32}, "'eos_token_id' must be a token id .0 to 2147483647"),
    ("qwen3moe", {"num_experts": 10**6}, "'num_experts' is 1000000, beyond the 4096"),
    ("qwen3moe", {"num_experts": 4096, "num_hidden_layers": 1024, "layer_types": None},
     "4096 experts in each of 1024 layers, beyond the 131072"),
])
def test_absurd_sizes_are_refused_up_front(tmp_path, arch, change, problem):
    source = tmp_path / "config.json"
    refused(lambda: spec_from_config({**demo_config(arch, "tiny"), **change}, source), CheckpointError, source,
            problem, seconds=5)
