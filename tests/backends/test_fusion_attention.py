"""group_query_attention and packed_qkv on the portable graphs of the tiny Qwen2 and Qwen3: fused ops appear
once per layer, logits equal the unfused graph's over prefill and cached decode; a changed softmax axis is
rejected. Qwen3 with our ops needs the kernel library (qwdeploy kernels build), else only structure is checked."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qwdeploy.backends.ort.artifact import save_model
from qwdeploy.backends.ort.fusions import group_query_attention, packed_qkv

from backend_helpers import greedy_logits
from backend_helpers import fuse as fuse_model


@pytest.fixture(scope="module")
def portable(exported):
    return exported("qwen2")


def _fused_folder(model, tmp_path):
    save_model(model, tmp_path, source=tmp_path)  # loaded with its data: nothing is read from source
    return tmp_path


def test_gqa_and_packed_qkv_fuse_and_match(portable, tmp_path):
    unfused = onnx.load(str(portable / "model.onnx"))
    fused, (gqa, packed) = fuse_model(unfused, group_query_attention, packed_qkv)
    assert (gqa.count, packed.count) == (2, 2)
    nodes = [n for n in fused.graph.node if n.op_type == "GroupQueryAttention"]
    assert len(nodes) == 2 and all(n.input[1] == "" and n.input[2] == "" for n in nodes)  # packed QKV
    assert not any(n.op_type == "Softmax" for n in fused.graph.node)
    ours, fed = greedy_logits(_fused_folder(fused, tmp_path), steps=3)
    theirs, _ = greedy_logits(portable, steps=3, forced=fed)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_qwen3_qk_norm_packs_into_qk_norm_rotary_packed(exported, tmp_path, kernel_library):
    portable = exported("qwen3")
    unfused = onnx.load(str(portable / "model.onnx"))
    fused, (gqa, packed) = fuse_model(unfused, group_query_attention, packed_qkv, qk_norm="qwdeploy")
    assert (gqa.count, packed.count) == (2, 2)
    assert "QKNormRotary" not in {n.op_type for n in fused.graph.node}
    norms = [n for n in fused.graph.node if n.op_type == "QKNormRotaryPacked" and n.domain == "qwdeploy"]
    attention = [n for n in fused.graph.node if n.op_type == "GroupQueryAttention"]
    assert [n.input[0] for n in attention] == [n.output[0] for n in norms]  # packed QKV straight into GQA
    assert all(n.input[1:3] == ["", ""] for n in attention)
    assert all(a.i == 0 for n in attention for a in n.attribute if a.name == "do_rotary")
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library))
    folder = _fused_folder(fused, tmp_path)
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ours, fed = greedy_logits(folder, steps=3, session=session)
    theirs, _ = greedy_logits(portable, steps=3, forced=fed)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_gqa_rejects_softmax_over_another_axis(portable):
    unfused = onnx.load(str(portable / "model.onnx"), load_external_data=False)
    for node in unfused.graph.node:
        if node.op_type == "Softmax":
            node.attribute[0].i = 1
    _, (gqa,) = fuse_model(unfused, group_query_attention)
    assert gqa.count == 0
    assert [why for _, why in gqa.rejections] == ["softmax is not over the key axis"] * 2
