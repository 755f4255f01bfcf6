"""half_cache (backends/cpu/half_cache.py): a default CPU int4/int8 export keeps the KV cache in float16, a float
build or -O kv_dtype=f32 in float32, and the float16 cache moves the logits by its rounding alone."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from backend_helpers import greedy_logits
from qwdeploy.toolkit.layout import MODEL_FILE


def _cache_types(folder) -> set[int]:
    graph = onnx.load(str(folder / MODEL_FILE), load_external_data=False).graph
    return {v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)
            if v.name.startswith(("past_key_values", "present"))}


@pytest.mark.parametrize("quant,options,want", [
    ("int4", {}, TensorProto.FLOAT16), ("int8", {}, TensorProto.FLOAT16), ("f32", {}, TensorProto.FLOAT),
    ("int4", {"kv_dtype": "f32"}, TensorProto.FLOAT), ("int4", {"custom_ops": "off"}, TensorProto.FLOAT),
])
def test_which_builds_keep_a_float16_cache(exported, quant, options, want):
    assert _cache_types(exported("qwen3", "cpu", quant, **options)) == {want}


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_a_float16_cache_moves_logits_by_its_rounding_alone(exported, arch):
    """Float activations (accuracy_level 0), so no int8 rounding downstream turns the cache's into whole code
    steps: float16 keeps 11 significant bits (2^-12 relative rounding), measured ~5e-3 on logits of magnitude
    ~16; bf16's 8 bits would move them ~8x as far."""
    exact = exported(arch, "cpu", "int4", custom_ops="on", accuracy_level="0", kv_dtype="f32")
    half = exported(arch, "cpu", "int4", custom_ops="on", accuracy_level="0")
    assert _cache_types(half) == {TensorProto.FLOAT16}
    reference, fed = greedy_logits(exact, steps=4)
    ours, _ = greedy_logits(half, steps=4, forced=fed)
    moved = np.abs(ours - reference).max(axis=-1)  # per position
    assert np.abs(reference).max() > 4.0  # not a degenerate model
    assert moved.min() > 0 and moved.max() < 1.5e-2, moved
