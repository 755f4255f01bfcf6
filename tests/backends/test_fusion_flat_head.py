"""flat_head (backends/cpu/fusions/flat_head.py): a tied head's QuantLinear or Linear takes the hidden states
as they are, without the Reshape/Shape/Slice/Concat/Reshape its Gemm needed, and computes what it computed
(run in ONNX Runtime with the host kernel library)."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qwdeploy.backends.cpu.fusions import flat_head, float_head, quant_linear
from qwdeploy.backends.graph import Graph
from qwdeploy.backends.ort.context import OrtContext
from qwdeploy.backends.ort.quant.config import QuantConfig
from qwdeploy.backends.ort.quant.matmul_nbits import quantize_matmuls
from qwdeploy.exporters.onnx.builder import GraphBuilder

from backend_helpers import fuse, ops
from fusion_graphs import FLOAT, HIDDEN

VOCAB = 50


def _tied_head(rng: np.random.Generator):
    """ids → the table's rows (+ h) → the exporter's tied head: flatten, Gemm(transB) on the table, restore."""
    g = GraphBuilder(17)
    x = g.op("Add", g.op("Gather", "table", "ids", axis=0), "h")  # [b, s, HIDDEN]
    logits = g.op("Gemm", g.reshape(x, [-1, HIDDEN]), "table", transB=1)  # [b * s, VOCAB]
    shape = g.op("Concat", g.op("Slice", g.op("Shape", x), g.const([0]), g.const([2])), g.const([VOCAB]), axis=0)
    g.op("Identity", g.reshape(logits, shape), out="logits")
    table = (rng.standard_normal((VOCAB, HIDDEN)) / 4).astype(np.float32)
    graph = helper.make_graph(
        g.nodes, "head", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"]),
                          helper.make_tensor_value_info("h", FLOAT, ["b", "s", HIDDEN])],
        [helper.make_tensor_value_info("logits", FLOAT, None)], [*g.constants, numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, library, feeds):
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _quantized(model):
    graph = Graph(model)
    quantize_matmuls(graph, OrtContext(quant=QuantConfig(bits=4, block_size=16, accuracy_level=4), num_layers=1))
    return fuse(graph.commit(), quant_linear)[0]


def test_tied_heads_take_the_states_unflattened_and_match(kernel_library):
    rng = np.random.default_rng(21)
    for product, unfused in (("Linear", fuse(_tied_head(rng), float_head)[0]), ("QuantLinear", _quantized(_tied_head(rng)))):
        fused, (report,) = fuse(unfused, flat_head)
        assert report.count == 1, report.rejections
        assert product in ops(fused) and not {"Reshape", "Shape", "Slice", "Concat"} & set(ops(fused))
        for b, s in ((1, 1), (2, 5)):
            feeds = {"ids": rng.integers(0, VOCAB, (b, s)), "h": rng.standard_normal((b, s, HIDDEN)).astype(np.float32)}
            ours, theirs = _run(fused, kernel_library, feeds), _run(unfused, kernel_library, feeds)
            assert ours.shape == (b, s, VOCAB) and np.abs(theirs).max() > 1.0
            np.testing.assert_array_equal(ours, theirs)  # the same kernel on the same rows


def test_a_head_that_keeps_its_logits_flat_stays():
    """Restored to [-1, N] instead of the states' [batch, seq, N]: the product on the states would not match."""
    model = _quantized(_tied_head(np.random.default_rng(22)))
    product = next(n for n in model.graph.node if n.op_type == "QuantLinear")
    restore = next(n for n in model.graph.node if n.op_type == "Reshape" and n.input[0] == product.output[0])
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1, VOCAB]), "flat_shape"))
    restore.input[1] = "flat_shape"
    fused, (report,) = fuse(model, flat_head)
    assert report.count == 0 and ops(fused).count("Reshape") == 2
    assert any("Concat" in why for _, why in report.rejections)
