"""qk_norm_attention (backends/cpu/fusions/qk_norm_attention.py): Qwen3's QKNormRotaryPacked folds into our
GroupQueryAttention (norm weights as inputs, rotary on), one node fewer per layer, and the tiny Qwen3 graph
gives the unfolded graph's logits over prefill and cached decode; a norm that rotates at other positions
stays."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from qwdeploy.backends.cpu.fusions import attention, qk_norm_attention
from qwdeploy.backends.ort.artifact import save_model
from qwdeploy.backends.ort.fusions import group_query_attention, packed_qkv

from backend_helpers import fuse, greedy_logits

OURS = (group_query_attention, packed_qkv, attention)


def _logits(model, source, folder, library, forced=None):
    folder.mkdir()
    save_model(model, folder, source=source)
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return greedy_logits(folder, steps=4, forced=forced, session=session)


def test_qwen3_norms_fold_into_attention_and_match(exported, tmp_path, kernel_library):
    source = exported("qwen3")
    portable = onnx.load(str(source / "model.onnx"))
    unfolded, _ = fuse(portable, *OURS, qk_norm="qwdeploy")
    folded, reports = fuse(portable, *OURS, qk_norm_attention, qk_norm="qwdeploy")
    assert reports[-1].count == 2 and not reports[-1].rejections
    assert len(folded.graph.node) == len(unfolded.graph.node) - 2
    assert "QKNormRotaryPacked" not in {n.op_type for n in folded.graph.node}
    for node in (n for n in folded.graph.node if n.op_type == "GroupQueryAttention"):
        assert node.domain == "qwdeploy" and node.input[1:3] == ["", ""] and len(node.input) == 11
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["do_rotary"] == 1 and attrs["epsilon"] > 0
    want, fed = _logits(unfolded, source, tmp_path / "unfolded", kernel_library)
    got, _ = _logits(folded, source, tmp_path / "folded", kernel_library, forced=fed)
    assert np.abs(want).max() > 1.0
    # The same float32 arithmetic in the same order (normalize, rotate, scale), moved into one kernel.
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_a_norm_rotating_at_other_positions_stays(exported):
    portable = onnx.load(str(exported("qwen3") / "model.onnx"))
    unfolded, _ = fuse(portable, *OURS, qk_norm="qwdeploy")
    unfolded.graph.input.append(helper.make_tensor_value_info("shifted_positions", TensorProto.INT64,
                                                              ["batch_size", "sequence_length"]))
    for node in unfolded.graph.node:
        if node.op_type == "QKNormRotaryPacked":
            node.input[3] = "shifted_positions"
    _, (report,) = fuse(unfolded, qk_norm_attention)
    assert report.count == 0
    assert {why for _, why in report.rejections} == {"rotates at shifted_positions, not the graph's position_ids"}
