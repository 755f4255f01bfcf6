"""Quantized copies of weight initializers, made once per source so consumers share them.

A tied embedding is one table read two ways (the embedding Gather and the LM head's Gemm with
transB=1), both as [rows, K]: quantizing it once stores one int4 copy instead of two.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ....toolkit.errors import QwdeployError
from ....toolkit.external_data import drop_pages
from ...graph import Graph
from ..context import OrtContext
from .blockwise import NonFinite, quantize


def quantized_inputs(g: Graph, ctx: OrtContext, source: str, weight: np.ndarray, transposed: bool,
                     bits: int | None = None) -> list[str]:
    """[B, scales, zero points or ""] initializer names for `weight` ([N, K], as stored: Graph.const) read from
    `source`, at `bits` (default: the config's)."""
    config = ctx.quant
    bits = bits or config.bits
    key = (source, transposed, bits)
    if key not in ctx.quantized:
        try:
            qw = quantize(weight, bits, config.block_size, config.symmetric, config.method, config.scale_numpy,
                          drop_pages)
        except NonFinite:
            g.const(source)  # read cast, a checkpoint's weight is refused by name and position
            raise QwdeployError(f"weight '{source}' holds a NaN or Inf; refusing to quantize a model that cannot "
                                "compute") from None
        prefix = source + (".T" if transposed else "") + ("" if bits == config.bits else f".int{bits}")
        dtype = helper.tensor_dtype_to_np_dtype(g.elem_type(source))  # the graph's float type, not the stored one
        ctx.quantized[key] = [g.add_const(f"{prefix}.qweight", qw.packed),
                      g.add_const(f"{prefix}.scales", qw.scales.astype(dtype)),
                      g.add_const(f"{prefix}.zero_points", qw.zero_points) if qw.zero_points is not None else ""]
    return ctx.quantized[key]
