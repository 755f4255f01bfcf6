"""The building blocks every Qwen layer shares: RMSNorm, Linear, SwiGLU."""

from __future__ import annotations

import numpy as np

from .builder import FLOAT, GraphBuilder


def rms_norm(g: GraphBuilder, x: str, weight: str, eps: float, compute: int) -> str:
    """weight * x / sqrt(mean(x^2) + eps) over the last axis, reduced in fp32 as transformers does."""
    with g.scope("norm"):
        xf = g.cast(x, FLOAT, compute)  # [..., dim] fp32: x^2 overflows fp16 from |x| > 256
        variance = g.reduce("ReduceMean", g.op("Pow", xf, g.const(2.0, np.float32)), [-1])  # [..., 1]
        normed = g.op("Div", xf, g.op("Sqrt", g.op("Add", variance, g.const(eps, np.float32))))
        return g.op("Mul", g.cast(normed, compute, FLOAT), weight)


def linear(g: GraphBuilder, x: str, weight: str, bias: str | None = None) -> str:
    """x @ W (+ b), W stored [in, out]."""
    y = g.op("MatMul", x, weight)
    return g.op("Add", y, bias) if bias else y


def swiglu(g: GraphBuilder, x: str, gate: str, up: str, down: str) -> str:
    """down(silu(x @ gate) * (x @ up)), the MLP of every Qwen layer and expert."""
    with g.scope("mlp"):
        a = g.op("MatMul", x, gate)  # [..., intermediate]
        silu = g.op("Mul", a, g.op("Sigmoid", a))
        return g.op("MatMul", g.op("Mul", silu, g.op("MatMul", x, up)), down)  # [..., hidden]
