"""Row tiles for QuantLinear and QuantSwiGLU weights (row_tile = 4, kernels/quantize.py tile_rows).

Decode reads 4 rows of a matrix together, each only a few hundred bytes long at Qwen widths; in row order
those are 4 short streams per tile, which the hardware prefetchers follow badly. Interleaved 64 bytes at a
time, each tile is one contiguous range (on AMD Zen4, 2 threads: about 20 GB/s of weights in row order,
28 GB/s in tiles, same kernel). Scales stay in row order: they are an eighth of the bytes. Weights another
node also reads (the tied embedding's GatherBlockQuantized) keep row order, as a tiled copy would add
their size to the artifact; so do shapes whose rows are not whole 64-byte chunks.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto

from ...kernels.quantize import ROW_TILE, tile_rows, tiles_fit
from ...kernels.schemas import DOMAIN
from ...toolkit.external_data import drop_pages, rows_per_slice
from ..graph import Graph, attributes
from ..ort.context import OrtContext

OPS = ("QuantLinear", "QuantSwiGLU")
WEIGHTS = 1  # B, the packed codes, in both ops


def _fits(g: Graph, node: NodeProto, attrs: dict, shared: set[str]) -> bool:
    blocks = -(-attrs["K"] // attrs["block_size"])
    weights = node.input[WEIGHTS]
    return (attrs["row_tile"] == 1 and g.is_const(weights) and g.uses(weights) == 1 and weights not in shared
            and tiles_fit(blocks, attrs["block_size"] * attrs["bits"] // 8)
            and (node.op_type != "QuantSwiGLU" or attrs["N"] // 2 % ROW_TILE == 0))


def tiled(g: Graph, weights: str) -> str:
    """A constant holding the codes `weights` in row tiles, made and written a slice of tiles at a time."""
    packed = g.const(weights)  # [rows, blocks, block_bytes]: a read-only map of the spill file, or in memory
    rows, blocks, block_bytes = packed.shape
    step = max(1, rows_per_slice(packed.shape, 1) // ROW_TILE) * ROW_TILE  # whole tiles

    def slices():
        for start in range(0, rows, step):
            part = packed[start:start + step]
            yield tile_rows(part)
            drop_pages(part)

    return g.add_rows(f"{weights}.tiled", (-(-rows // ROW_TILE) * ROW_TILE, blocks, block_bytes), np.uint8, slices())


def row_tiles(g: Graph, ctx: OrtContext) -> int:
    """Lays out every fitting QuantLinear/QuantSwiGLU weight in row tiles; returns how many."""
    count, shared = 0, g.shared_storage()
    for node in [n for op in OPS for n in g.nodes(op, DOMAIN)]:
        attrs = attributes(node)
        if not _fits(g, node, attrs, shared):
            continue
        weights = node.input[WEIGHTS]
        inputs = [*node.input[:WEIGHTS], tiled(g, weights), *node.input[WEIGHTS + 1:]]
        g.replace([node], [g.make(node.op_type, inputs, list(node.output), node.name, domain=DOMAIN,
                                  **(attrs | {"row_tile": ROW_TILE}))])
        count += 1
    return count
