"""attention (backends/cpu/fusions/attention.py): ONNX Runtime's GroupQueryAttention becomes ours, node for
node, and the tiny Qwen2 and Qwen3 graphs give the unfused graphs' logits over prefill and cached decode;
attributes our kernel does not compute are refused with the reason."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from qwdeploy.backends.cpu.fusions import attention
from qwdeploy.backends.ort.artifact import save_model
from qwdeploy.backends.ort.fusions import group_query_attention, packed_qkv

from backend_helpers import fuse, greedy_logits


@pytest.mark.parametrize("arch, qk_norm", [("qwen2", "separate"), ("qwen3", "qwdeploy")])
def test_group_query_attention_runs_as_ours_and_matches(exported, tmp_path, kernel_library, arch, qk_norm):
    portable = exported(arch)
    fused, (_, _, report) = fuse(onnx.load(str(portable / "model.onnx")), group_query_attention, packed_qkv,
                                 attention, qk_norm=qk_norm)
    nodes = [n for n in fused.graph.node if n.op_type == "GroupQueryAttention"]
    assert report.count == 2 and [n.domain for n in nodes] == ["qwdeploy"] * 2
    save_model(fused, tmp_path, source=tmp_path)
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ours, fed = greedy_logits(tmp_path, steps=4, session=session)
    theirs, _ = greedy_logits(portable, steps=4, forced=fed)
    assert np.abs(theirs).max() > 1.0
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_attributes_our_kernel_does_not_compute_are_refused(exported):
    unfused = onnx.load(str(exported("qwen2") / "model.onnx"), load_external_data=False)
    gqa_only, _ = fuse(unfused, group_query_attention)
    for node in gqa_only.graph.node:
        if node.op_type == "GroupQueryAttention":
            node.attribute.append(helper.make_attribute("local_window_size", 16))
    _, (report,) = fuse(gqa_only, attention)
    assert report.count == 0
    assert [why for _, why in report.rejections] == ["local_window_size=16, which our attention kernel does not "
                                                     "compute"] * 2
