"""Quantized copies of weight initializers, made once per source so consumers share them.

A tied embedding is one table read two ways (the embedding Gather and the LM head's Gemm with
transB=1), both as [rows, K]: quantizing it once stores one int4 copy instead of two.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from onnx import helper

from ....toolkit.errors import QwdeployError
from ....toolkit.external_data import drop_pages
from ...graph import Graph
from ..context import OrtContext
from .blockwise import NonFinite, quantized_slices


def matrix_shape(blocks: list[np.ndarray]) -> tuple[int, int]:
    """(N, K) of a matrix given as consecutive row blocks."""
    return sum(len(block) for block in blocks), blocks[0].shape[1]


def quantized_inputs(g: Graph, ctx: OrtContext, source: str, weight: list[np.ndarray], transposed: bool,
                     bits: int | None = None) -> list[str]:
    """[B, scales, zero points or ""] initializer names for `weight` ([N, K] as consecutive row blocks, as stored:
    Graph.row_blocks) read from `source`, at `bits` (default: the config's)."""
    config = ctx.quant
    bits = bits or config.bits
    key = (source, transposed, bits)
    if key not in ctx.quantized:
        n, k = matrix_shape(weight)
        blocks = -(-k // config.block_size)
        prefix = source + (".T" if transposed else "") + ("" if bits == config.bits else f".int{bits}")
        dtype = helper.tensor_dtype_to_np_dtype(g.elem_type(source))  # the graph's float type, not the stored one
        # The codes go to the graph (a spill file) slice by slice as they are made: scales and zero points, an
        # eighth of their bytes or less, gather here.
        scales = np.empty((n, blocks), dtype)
        zero_points = None if config.symmetric else np.empty((n, -(-blocks * bits // 8)), np.uint8)

        def codes() -> Iterator[np.ndarray]:
            for part in quantized_slices(weight, bits, config.block_size, config.symmetric, config.method,
                                         config.scale_numpy, drop_pages):
                rows = slice(part.start, part.start + len(part.packed))
                scales[rows] = part.scales
                if zero_points is not None:
                    zero_points[rows] = part.zero_points
                yield part.packed

        try:
            packed = g.add_rows(f"{prefix}.qweight", (n, blocks, config.block_size * bits // 8), np.uint8, codes())
        except NonFinite:
            g.const(source)  # read cast, a checkpoint's weight is refused by name and position
            raise QwdeployError(f"weight '{source}' holds a NaN or Inf; refusing to quantize a model that cannot "
                                "compute") from None
        ctx.quantized[key] = [packed, g.add_const(f"{prefix}.scales", scales),
                              g.add_const(f"{prefix}.zero_points", zero_points) if zero_points is not None else ""]
    return ctx.quantized[key]
