"""The gated-MLP fusions: silu_quick_gelu (ONNX Runtime's ops), swiglu (qwdeploy or com.microsoft), quant_swiglu.

Our qwdeploy ops have no kernel library yet, so their numeric checks run the graphs in onnx's
reference evaluator with a numpy SwiGLU/QuantSwiGLU (the schema's formula) registered for the domain.
"""

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from qwdeploy.backends.graph import Graph
from qwdeploy.backends.ort.fusions import quant_swiglu, silu_quick_gelu, swiglu
from qwdeploy.backends.ort.quant.blockwise import Quantized, dequantize
from qwdeploy.backends.ort.quant.config import QuantConfig
from qwdeploy.backends.ort.quant.matmul_nbits import quantize_matmuls
from qwdeploy.backends.ort.context import OrtContext
from qwdeploy.kernels.schemas import DOMAIN, SCHEMAS

from backend_helpers import fuse, ops, run
from fusion_graphs import HIDDEN, mlp_graph


def _silu_gate(y: np.ndarray) -> np.ndarray:
    gate, up = np.split(y, 2, axis=-1)
    return gate / (1 + np.exp(-gate)) * up


class SwiGLU(OpRun):
    op_domain = DOMAIN

    def _run(self, gate_up, alpha=None):  # onnx 1.23 hands over its own SwiGLU's default attribute
        return (_silu_gate(gate_up).astype(gate_up.dtype),)


class QuantSwiGLU(OpRun):
    op_domain = DOMAIN

    def _run(self, x, b, scales, zero_points=None, K=None, N=None, bits=None, block_size=None, accuracy_level=None,
             row_tile=None):
        blocks = b.shape[1]
        qw = Quantized(b, scales.reshape(N, blocks), None if zero_points is None else zero_points.reshape(N, -1),
                       bits, block_size, K)
        return (_silu_gate(x @ dequantize(qw).T).astype(x.dtype),)


def _reference(model, feeds):
    return ReferenceEvaluator(model, new_ops=[SwiGLU, QuantSwiGLU]).run(None, feeds)[0]


def _feeds(rng, *names):
    return {n: rng.standard_normal((2, 3, HIDDEN)).astype(np.float32) for n in names}


def test_silu_quick_gelu_fuses_and_matches():
    rng = np.random.default_rng(2)
    unfused = mlp_graph(rng)
    fused, (report,) = fuse(unfused, silu_quick_gelu)
    assert report.count == 1 and "QuickGelu" in ops(fused) and "Sigmoid" not in ops(fused)
    feeds = _feeds(rng, "x")
    np.testing.assert_allclose(run(fused, feeds)[0], run(unfused, feeds)[0], atol=1e-5, rtol=0)


def test_swiglu_qwdeploy_fuses_per_schema_and_matches():
    rng = np.random.default_rng(3)
    unfused = mlp_graph(rng)
    fused, (report,) = fuse(unfused, swiglu, swiglu_domain=DOMAIN)
    assert report.count == 1
    assert ops(fused) == ["MatMul", "SwiGLU", "MatMul", "Identity"]
    node = fused.graph.node[1]
    assert node.domain == DOMAIN and len(node.input) == len(SCHEMAS["SwiGLU"].inputs)
    feeds = _feeds(rng, "x")
    np.testing.assert_allclose(_reference(fused, feeds), run(unfused, feeds)[0], atol=1e-5, rtol=0)


def test_swiglu_onnxruntime_domain_is_structurally_packed():
    fused, (report,) = fuse(mlp_graph(np.random.default_rng(3)), swiglu, swiglu_domain="com.microsoft")
    assert report.count == 1
    swish = next(n for n in fused.graph.node if n.op_type == "SwiGLU")
    assert swish.domain == "com.microsoft" and len(swish.input) == 1  # packed gate|up: no CPU kernel to run it


def test_swiglu_rejects_gate_and_up_of_different_inputs():
    fused, (report,) = fuse(mlp_graph(np.random.default_rng(4), shared_input=False), swiglu, swiglu_domain=DOMAIN)
    assert report.count == 0 and "Sigmoid" in ops(fused)
    assert any("different inputs" in why for _, why in report.rejections)


def test_quant_swiglu_fuses_quantized_gate_up_and_matches():
    rng = np.random.default_rng(5)
    fused, _ = fuse(mlp_graph(rng), swiglu, swiglu_domain=DOMAIN)
    graph = Graph(fused)
    quantize_matmuls(graph, OrtContext(quant=QuantConfig(bits=4, block_size=16), num_layers=1))
    quantized = graph.commit()
    final, (report,) = fuse(quantized, quant_swiglu)
    assert report.count == 1
    assert ops(final) == ["QuantSwiGLU", "MatMulNBits", "Identity"]
    node = final.graph.node[0]
    assert {a.name for a in node.attribute} == set(SCHEMAS["QuantSwiGLU"].attributes)
    feeds = _feeds(rng, "x")
    # The unfused reference: MatMulNBits (ORT's kernel) feeding the numpy SwiGLU, down projection dropped.
    head = onnx.ModelProto()
    head.CopyFrom(quantized)
    swish = next(n for n in head.graph.node if n.op_type == "SwiGLU")
    kept = [n for n in head.graph.node if swish.input[0] in n.output]
    del head.graph.node[:]
    head.graph.node.extend(kept)
    del head.graph.output[:]
    head.graph.output.extend([onnx.helper.make_tensor_value_info(swish.input[0], onnx.TensorProto.FLOAT, None)])
    expected = _silu_gate(run(head, feeds)[0])
    kept = [n for n in final.graph.node if n.op_type == "QuantSwiGLU"]
    del final.graph.node[:]
    final.graph.node.extend(kept)
    del final.graph.output[:]
    final.graph.output.extend([onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)])
    np.testing.assert_allclose(_reference(final, feeds), expected, atol=1e-4, rtol=0)
