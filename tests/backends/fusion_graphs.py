"""Small unfused graphs written the way the portable exporter writes them, for the per-fusion tests."""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

from qwdeploy.exporters.onnx.builder import GraphBuilder
from qwdeploy.exporters.onnx.layers import rms_norm, swiglu

HIDDEN, INTER = 64, 96
FLOAT = TensorProto.FLOAT


def model(g: GraphBuilder, inputs: dict[str, list], outputs: list[str], weights: dict[str, np.ndarray]) -> ModelProto:
    graph = helper.make_graph(
        g.nodes, "test", [helper.make_tensor_value_info(n, FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(o, FLOAT, None) for o in outputs],
        [*g.constants, *(numpy_helper.from_array(w, n) for n, w in weights.items())])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def weights(rng: np.random.Generator, **shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {n: (rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32) for n, s in shapes.items()}


def norm_graph(residual: bool, rng: np.random.Generator, bias_const: bool = False) -> ModelProto:
    """y = rms_norm(a + b) (and the sum as a second output when `residual`)."""
    g = GraphBuilder(17)
    w = {"gamma": (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)}
    if bias_const:
        w["shift"] = rng.standard_normal(HIDDEN).astype(np.float32)
    x = g.op("Add", "a", "shift" if bias_const else "b") if residual else "a"
    y = rms_norm(g, x, "gamma", 1e-6, FLOAT)
    g.op("Identity", y, out="y")
    outputs = ["y"]
    if residual:
        g.op("Relu", x, out="sum_used")
        outputs.append("sum_used")
    inputs = {"a": ["b", "s", HIDDEN], **({"b": ["b", "s", HIDDEN]} if residual and not bias_const else {})}
    return model(g, inputs, outputs, w)


def mlp_graph(rng: np.random.Generator, shared_input: bool = True) -> ModelProto:
    g = GraphBuilder(17)
    w = weights(rng, gate=(HIDDEN, INTER), up=(HIDDEN, INTER), down=(INTER, HIDDEN))
    if shared_input:
        g.op("Identity", swiglu(g, "x", "gate", "up", "down"), out="y")
        return model(g, {"x": ["b", "s", HIDDEN]}, ["y"], w)
    a = g.op("MatMul", "x", "gate")
    silu = g.op("Mul", a, g.op("Sigmoid", a))
    g.op("MatMul", g.op("Mul", silu, g.op("MatMul", "x2", "up")), "down", out="y")
    return model(g, {"x": ["b", "s", HIDDEN], "x2": ["b", "s", HIDDEN]}, ["y"], w)
