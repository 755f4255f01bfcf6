"""float_head (backends/cpu/fusions/float_head.py): a Gemm reading the lookup's table as its transposed B
becomes qwdeploy Linear on that table and computes what the Gemm computed; an untied head keeps its Gemm."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import ModelProto, TensorProto, helper, numpy_helper

from qwdeploy.backends.cpu.fusions import float_head

from backend_helpers import fuse, ops, run

VOCAB, HIDDEN = 37, 24


def _head_graph(tied: bool, bias: bool) -> ModelProto:
    rng = np.random.default_rng(3)
    table = rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32)  # [vocab, hidden]
    head = table if tied else rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32)
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(head, "head")]
    gemm_inputs = ["hidden", "table" if tied else "head"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(VOCAB).astype(np.float32), "bias"))
        gemm_inputs.append("bias")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["embedded"], name="/embed/Gather"),
             helper.make_node("Reshape", ["embedded", "flat"], ["hidden"], name="/embed/Reshape"),
             helper.make_node("Gemm", gemm_inputs, ["logits"], name="/lm_head/Gemm", transB=1)]
    inits.append(numpy_helper.from_array(np.array([-1, HIDDEN], np.int64), "flat"))
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("bias", [False, True])
def test_tied_head_becomes_linear_and_matches(kernel_library, bias):
    model = _head_graph(tied=True, bias=bias)
    fused, (report,) = fuse(model, float_head)
    assert report.count == 1 and ops(fused) == ["Gather", "Reshape", "Linear"]
    assert list(fused.graph.node[-1].input) == ["hidden", "table", *(["bias"] if bias else [])]
    feeds = {"ids": np.random.default_rng(4).integers(0, VOCAB, (2, 5)).astype(np.int64)}
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library))
    ours = ort.InferenceSession(fused.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    theirs = run(model, feeds)
    assert ours[0].shape == (10, VOCAB) and np.abs(theirs[0]).max() > 1.0
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5, rtol=1e-5)


def test_untied_head_keeps_its_gemm():
    fused, (report,) = fuse(_head_graph(tied=False, bias=False), float_head)
    assert report.count == 0 and "Gemm" in ops(fused)
    assert "not also a lookup's table" in report.rejections[0][1]
