"""Embedding quantization: Gather on a constant table → GatherBlockQuantized, sharing a tied LM head's copy."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qwdeploy.backends.graph import Graph
from qwdeploy.backends.ort.quant import embedding
from qwdeploy.backends.ort.quant.blockwise import dequantize, quantize
from qwdeploy.backends.ort.quant.config import QuantConfig
from qwdeploy.backends.ort.quant.matmul_nbits import quantize_matmuls
from qwdeploy.backends.ort.context import OrtContext
from qwdeploy.backends.passes import Fusion

from backend_helpers import fuse, ops, run

VOCAB, HIDDEN = 80, 64


def _tied_model(table: np.ndarray):
    """ids [2, 3] → hidden = E[ids], logits = hidden @ E^T (the native exporter's tied LM head)."""
    nodes = [helper.make_node("Gather", ["E", "ids"], ["hidden"], name="/embed/Gather"),
             helper.make_node("Gemm", ["flat", "E"], ["logits"], name="/lm_head/Gemm", transB=1),
             helper.make_node("Reshape", ["hidden", "shape"], ["flat"], name="/lm_head/Reshape")]
    graph = helper.make_graph(
        nodes, "tied", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(table, "E"), numpy_helper.from_array(np.array([-1, HIDDEN]), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _quantized(model, config: QuantConfig):
    """The CPU pipeline's quantize phase: MatMulNBits first, then the lookup, one context (one store)."""
    graph, context = Graph(model), OrtContext(quant=config)
    quantize_matmuls(graph, context)
    report = Fusion(embedding)(graph, context)
    return graph.commit(), report


@pytest.mark.parametrize("bits,block,symmetric", [(4, 32, True), (4, 16, False), (8, 64, True)])
def test_tied_table_is_quantized_once_and_matches(bits, block, symmetric):
    rng = np.random.default_rng(bits * block)
    table = (0.05 * rng.standard_normal((VOCAB, HIDDEN))).astype(np.float32)
    config = QuantConfig(bits=bits, block_size=block, symmetric=symmetric)
    fused, report = _quantized(_tied_model(table), config)
    assert report.count == 1
    assert "Gather" not in ops(fused) and {"GatherBlockQuantized", "MatMulNBits"} <= set(ops(fused))
    packed = [i for i in fused.graph.initializer if i.name.endswith(".qweight")]
    assert len(packed) == 1 and "E" not in {i.name for i in fused.graph.initializer}

    ids = rng.integers(0, VOCAB, (2, 3))
    hidden, logits = run(fused, {"ids": ids})
    expected = dequantize(quantize(table, bits, block, symmetric))  # [VOCAB, HIDDEN]
    np.testing.assert_allclose(hidden, expected[ids], atol=1e-6)
    np.testing.assert_allclose(logits, hidden.reshape(-1, HIDDEN) @ expected.T, atol=1e-4)
    assert np.abs(hidden - table[ids]).max() < (0.2 if bits == 4 else 0.02) * np.abs(table).max()


@pytest.mark.parametrize("keep,width,reason", [(("embed",), HIDDEN, "kept in float"),
                                               ((), 48, "not a multiple of block_size")])
def test_rejects_kept_or_unblockable_tables(keep, width, reason):
    table = np.random.default_rng(3).standard_normal((VOCAB, width)).astype(np.float32)
    gather = helper.make_node("Gather", ["E", "ids"], ["hidden"], name="/embed/Gather")
    graph = helper.make_graph([gather], "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [4])],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(table, "E")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fused, (report,) = fuse(model, embedding, quant=QuantConfig(bits=4, block_size=32, keep=keep))
    assert report.count == 0 and ops(fused) == ["Gather"]
    assert reason in report.rejections[0][1]
