"""Quantized copies of weight initializers, made once per source so consumers share them.

A tied embedding is one table read two ways (the embedding Gather and the LM head's Gemm with
transB=1), both as [rows, K]: quantizing it once stores one int4 copy instead of two.
"""

from __future__ import annotations

import numpy as np

from ...graph import Graph
from ...passes import Context
from .blockwise import quantize
from .config import QuantConfig


def quantized_inputs(g: Graph, ctx: Context, source: str, weight: np.ndarray, transposed: bool) -> list[str]:
    """[B, scales, zero points or ""] initializer names for `weight` ([N, K]) read from `source`."""
    cache: dict = ctx.state.setdefault("quantized", {})
    key = (source, transposed)
    if key not in cache:
        config: QuantConfig = ctx.options["quant"]
        qw = quantize(weight, config.bits, config.block_size, config.symmetric, config.method, config.scale_numpy)
        prefix = source + (".T" if transposed else "")
        cache[key] = [g.add_const(f"{prefix}.qweight", qw.packed),
                      g.add_const(f"{prefix}.scales", qw.scales.astype(weight.dtype)),
                      g.add_const(f"{prefix}.zero_points", qw.zero_points) if qw.zero_points is not None else ""]
    return cache[key]
