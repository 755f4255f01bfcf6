"""Rotary inverse frequencies and attention scaling equal transformers' rope init functions."""

from __future__ import annotations

import numpy as np
import pytest

import transformers
import torch

from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

from qwdeploy.exporters.onnx.rope import rope_parameters  # noqa: E402
from qwdeploy.toolkit.demo import demo_config  # noqa: E402
from qwdeploy.toolkit.spec import spec_from_config  # noqa: E402

SCALINGS = [
    None,
    {"rope_type": "linear", "factor": 2.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    {"rope_type": "yarn", "factor": 8.0, "beta_fast": 16, "beta_slow": 2, "mscale": 1.0, "mscale_all_dim": 0.5},
    {"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.3, "truncate": False},
]


@pytest.mark.parametrize("scaling", SCALINGS)
def test_rope_parameters_match_transformers(scaling):
    config = {**demo_config("qwen3", "small"), "rope_scaling": scaling}
    hf_config = transformers.Qwen3Config(**{k: v for k, v in config.items() if k != "architectures"})
    kind = scaling["rope_type"] if scaling else "default"
    inv_freq, attention = ROPE_INIT_FUNCTIONS[kind](hf_config, "cpu")
    ours, our_attention = rope_parameters(spec_from_config(config))
    np.testing.assert_allclose(ours, inv_freq.numpy(), rtol=1e-6)
    assert our_attention == pytest.approx(attention, rel=1e-7)
