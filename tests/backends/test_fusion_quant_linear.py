"""quant_linear (backends/cpu/fusions/quant_linear.py): every MatMulNBits at accuracy_level 4 becomes one
qwdeploy QuantLinear on the same tensors, and computes what it computed (run in ONNX Runtime with the
host kernel library, against ONNX Runtime's own MatMulNBits)."""

import numpy as np
import onnxruntime as ort

from qwdeploy.backends.cpu.fusions import quant_linear
from qwdeploy.backends.graph import Graph
from qwdeploy.backends.ort.context import OrtContext
from qwdeploy.backends.ort.quant.config import QuantConfig
from qwdeploy.backends.ort.quant.matmul_nbits import quantize_matmuls
from qwdeploy.kernels.schemas import SCHEMAS

from backend_helpers import fuse, ops, run
from fusion_graphs import HIDDEN, mlp_graph


def _quantized(accuracy_level: int, symmetric: bool = True):
    graph = Graph(mlp_graph(np.random.default_rng(7), shared_input=False))
    config = QuantConfig(bits=4, block_size=16, symmetric=symmetric, accuracy_level=accuracy_level)
    quantize_matmuls(graph, OrtContext(quant=config, num_layers=1))
    return graph.commit()


def _feeds():
    rng = np.random.default_rng(8)
    return {name: rng.standard_normal((2, 3, HIDDEN)).astype(np.float32) for name in ("x", "x2")}


def test_every_level_4_matmul_nbits_becomes_quant_linear_and_matches(kernel_library):
    for symmetric in (True, False):
        quantized = _quantized(4, symmetric)
        fused, (report,) = fuse(quantized, quant_linear)
        assert report.count == 3 and "MatMulNBits" not in ops(fused) and ops(fused).count("QuantLinear") == 3
        node = next(n for n in fused.graph.node if n.op_type == "QuantLinear")
        assert {a.name for a in node.attribute} == set(SCHEMAS["QuantLinear"].attributes)
        options = ort.SessionOptions()
        options.register_custom_ops_library(str(kernel_library))
        session = ort.InferenceSession(fused.SerializeToString(), options, providers=["CPUExecutionProvider"])
        ours = session.run(None, _feeds())[0]
        theirs = run(quantized, _feeds())[0]
        assert np.abs(theirs).max() > 1.0
        # Both quantize activations to int8 per block: only the float summation order differs.
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_float_activations_are_left_to_matmul_nbits():
    fused, (report,) = fuse(_quantized(0), quant_linear)
    assert report.count == 0 and ops(fused).count("MatMulNBits") == 3
    assert all("accuracy_level 0" in why for _, why in report.rejections)
