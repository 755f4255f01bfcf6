"""Embedding lookup on a constant table → GatherBlockQuantized (com.microsoft) on its int4/int8 copy.

Pattern: Gather(E, ids) along axis 0, E a constant float [V, H] table.
Rewrite: GatherBlockQuantized(B viewed as [V, H * bits / 8], ids, scales[, zero points]) with B the
MatMulNBits layout from the shared store, so a tied LM head and the lookup read one copy. The view is a
second initializer over the same bytes of the data file, not a Reshape: ONNX Runtime folds a Reshape of
a constant into a private copy of the whole table (68 MB for the 0.5B shape at int4).
The float table is the largest tensor of a small Qwen (0.5B: 136M of 494M parameters); left in
fp32 it is 544 MB, more than every int4 layer together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto

from ...graph import Graph, Reject
from ..context import OrtContext
from ..fusions import MS
from .matmul_nbits import MIN_ROWS
from .store import quantized_inputs

ANCHOR = "Gather"


@dataclass(frozen=True)
class Found:
    gather: NodeProto
    table: np.ndarray  # [V, H]


def match(g: Graph, gather: NodeProto, ctx: OrtContext) -> Found:
    config = ctx.quant
    if "embed" in config.keep:
        raise Reject("embeddings kept in float (-O keep=embed)")
    if not g.is_const(gather.input[0]):
        raise Reject("data is not a constant table")
    table = g.const(gather.input[0], stored=True)
    axis = next((a.i for a in gather.attribute if a.name == "axis"), 0)
    if table.ndim != 2 or axis != 0 or not g.is_float(gather.input[0]):
        raise Reject("not a row lookup in a float matrix")
    if table.shape[0] < MIN_ROWS:
        raise Reject(f"{table.shape[0]} rows: too small to pay")
    if table.shape[1] % config.block_size:
        raise Reject(f"width {table.shape[1]} is not a multiple of block_size {config.block_size}")
    return Found(gather, table)


def rewrite(g: Graph, f: Found, ctx: OrtContext) -> None:
    config = ctx.quant
    rows, width = f.table.shape
    packed, scales, zero_points = quantized_inputs(g, ctx, f.gather.input[0], [f.table], transposed=False)
    name = f.gather.name.rsplit("/", 1)[0] + "/GatherBlockQuantized"
    # MatMulNBits stores B as [N, blocks, bytes per block]; the lookup wants the rows flat.
    flat = g.add_view(f"{packed}.rows", packed, (rows, width * config.bits // 8))
    lookup = g.make("GatherBlockQuantized", [flat, f.gather.input[1], scales, zero_points],
                    [f.gather.output[0]], name, domain=MS, gather_axis=0, quantize_axis=1,
                    block_size=config.block_size, bits=config.bits)
    g.add_opset(MS, 1)
    g.replace([f.gather], [lookup])
