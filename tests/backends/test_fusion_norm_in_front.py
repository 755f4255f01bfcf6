"""norm_in_front (backends/cpu/fusions/norm_in_front.py): a layer's RMSNorm, with or without its residual
add, becomes inputs of the QuantLinear or QuantSwiGLU it feeds, and the graph computes what it computed
(both run in ONNX Runtime with the host kernel library)."""

import numpy as np
import onnxruntime as ort
import pytest

from qwdeploy.backends.cpu.fusions import norm_in_front, quant_linear
from qwdeploy.backends.graph import Graph
from qwdeploy.backends.ort.context import OrtContext
from qwdeploy.backends.ort.fusions import quant_swiglu, rms_norm, skip_rms_norm, swiglu
from qwdeploy.backends.ort.quant.config import QuantConfig
from qwdeploy.backends.ort.quant.matmul_nbits import quantize_matmuls
from qwdeploy.exporters.onnx.builder import GraphBuilder
from qwdeploy.exporters.onnx.layers import rms_norm as rms_norm_layer
from qwdeploy.exporters.onnx.layers import swiglu as swiglu_layer

from backend_helpers import fuse, ops
from fusion_graphs import FLOAT, HIDDEN, INTER, model, weights

EPS = 1e-6


def _layer(rng: np.random.Generator, final_uses: int = 1):
    """Two residual blocks and a final norm: x → norm → MatMul, + residual → norm → MLP, + residual → norm →
    `final_uses` Identity outputs. Quantized and fused as the CPU pipeline does, up to norm_in_front."""
    g = GraphBuilder(17)
    w = weights(rng, proj=(HIDDEN, HIDDEN), gate=(HIDDEN, INTER), up=(HIDDEN, INTER), down=(INTER, HIDDEN))
    w |= {f"g{i}": (1 + 0.2 * rng.standard_normal(HIDDEN)).astype(np.float32) for i in range(3)}
    h = g.op("MatMul", rms_norm_layer(g, "x", "g0", EPS, FLOAT), "proj")
    s1 = g.op("Add", h, "x")
    s2 = g.op("Add", swiglu_layer(g, rms_norm_layer(g, s1, "g1", EPS, FLOAT), "gate", "up", "down"), s1)
    last = rms_norm_layer(g, s2, "g2", EPS, FLOAT)
    outputs = [g.op("Identity", last, out=f"y{i}") for i in range(final_uses)]
    fused, _ = fuse(model(g, {"x": ["b", "s", HIDDEN]}, outputs, w), rms_norm, skip_rms_norm, swiglu)
    graph = Graph(fused)
    quantize_matmuls(graph, OrtContext(quant=QuantConfig(bits=4, block_size=16, accuracy_level=4), num_layers=1))
    quantized, _ = fuse(graph.commit(), quant_swiglu, quant_linear)
    return quantized


def _run(model, library, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_both_norms_move_into_their_products_and_match(kernel_library):
    rng = np.random.default_rng(11)
    unfused = _layer(rng)
    assert ops(unfused).count("SimplifiedLayerNormalization") == 1
    assert ops(unfused).count("SkipSimplifiedLayerNormalization") == 2
    fused, (report,) = fuse(unfused, norm_in_front)
    assert report.count == 2
    assert sorted(ops(fused)) == ["Identity", "QuantLinear", "QuantLinear", "QuantSwiGLU",
                                  "SkipSimplifiedLayerNormalization"]
    qkv, mlp = (next(n for n in fused.graph.node if n.op_type == op) for op in ("QuantLinear", "QuantSwiGLU"))
    assert qkv.input[0] == "x" and qkv.input[5] == "" and len(qkv.output) == 1  # no residual add in front
    assert mlp.input[4] and len(mlp.output) == 2  # the residual add, and its sum for the next block
    for node in (qkv, mlp):
        assert next(a.f for a in node.attribute if a.name == "epsilon") == pytest.approx(EPS)
    (why,) = [why for _, why in report.rejections]
    assert "feeds Identity" in why
    # Our norm and ONNX Runtime's can round a value one ulp apart, and that can move one int8 activation code
    # (1% of such inputs, measured): the outputs then differ by a code's worth, 3e-3; else by float rounding
    # (5e-7). A lost residual, norm weight or sum moves them by the outputs' own size.
    for x in (rng.standard_normal((1, 1, HIDDEN)), 3 * rng.standard_normal((2, 7, HIDDEN)) + 1):
        ours, theirs = (_run(m, kernel_library, x.astype(np.float32))[0] for m in (fused, unfused))
        assert np.abs(theirs).max() > 0.5
        np.testing.assert_allclose(ours, theirs, atol=1e-2, rtol=0)


def test_a_norm_with_two_uses_stays():
    fused, (report,) = fuse(_layer(np.random.default_rng(12), final_uses=2), norm_in_front)
    assert report.count == 2 and ops(fused).count("SkipSimplifiedLayerNormalization") == 1
    assert any("2 uses" in why for _, why in report.rejections)
