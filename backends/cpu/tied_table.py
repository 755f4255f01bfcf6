"""A tied LM head's table in QuantLinear's layout: the embedding lookup becomes qwdeploy QuantGather.

With tied embeddings the lookup (ONNX Runtime's GatherBlockQuantized) and the LM head's QuantLinear read
one stored table, so row_tiles.py leaves it in row order and half_scales.py gives the head a float16 copy
of the float32 scales the lookup needs (its output takes its scales' type). The head is the largest matrix
of a small Qwen (0.5B: a quarter of the bytes a decode step reads), and in row order it streams 4 short
ranges per tile. QuantGather reads the tiled codes and the float16 scales the head reads: the table is
stored once, tiled, with one set of scales (0.5B int4: 17 MB of float32 scales fewer).
"""

from __future__ import annotations

from onnx import NodeProto

from ...kernels.quantize import ROW_TILE, tiles_fit
from ...kernels.schemas import DOMAIN, DOMAIN_VERSION
from ..graph import Graph, attributes
from ..ort.context import OrtContext
from ..ort.fusions import MS
from .row_tiles import tiled

DATA, INDICES, SCALES, ZERO_POINTS = 0, 1, 2, 3  # QuantGather's inputs; QuantLinear's scales and zero points too
WEIGHTS = 1  # QuantLinear's B


def _head(g: Graph, lookup: NodeProto) -> NodeProto | None:
    """The QuantLinear (row order) whose codes the lookup's table is, where tiles fit them."""
    for head in g.nodes("QuantLinear", DOMAIN):
        attrs = attributes(head)
        blocks = -(-attrs["K"] // attrs["block_size"])
        if (attrs["row_tile"] == 1 and g.same_storage(head.input[WEIGHTS], lookup.input[DATA])
                and g.uses(head.input[WEIGHTS]) == 1 and g.uses(lookup.input[DATA]) == 1
                and tiles_fit(blocks, attrs["block_size"] * attrs["bits"] // 8)):
            return head
    return None


def tied_table(g: Graph, ctx: OrtContext) -> int:
    """Tiles every tied table and moves its lookup onto QuantGather; returns how many."""
    count = 0
    for lookup in g.nodes("GatherBlockQuantized", MS):
        head = _head(g, lookup)
        if head is None:
            continue
        attrs = attributes(head)
        table = tiled(g, head.input[WEIGHTS])
        zero_points = head.input[ZERO_POINTS] if len(head.input) > ZERO_POINTS else ""
        inputs = [table, lookup.input[INDICES], head.input[SCALES], *([zero_points] if zero_points else [])]
        shape = {k: attrs[k] for k in ("K", "N", "bits", "block_size")} | {"row_tile": ROW_TILE}
        g.replace([head], [g.make("QuantLinear", [head.input[0], table, *head.input[SCALES:]], list(head.output),
                                  head.name, domain=DOMAIN, **(attrs | {"row_tile": ROW_TILE}))])
        name = lookup.name.replace("GatherBlockQuantized", "QuantGather")
        g.replace([lookup], [g.make("QuantGather", inputs, list(lookup.output), name, domain=DOMAIN, **shape)])
        count += 1
    if count:
        g.add_opset(DOMAIN, DOMAIN_VERSION)
    return count
