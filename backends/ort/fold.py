"""Casts of constant weights (bf16 checkpoints keep bf16 on disk) folded into float initializers."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..graph import Graph
from .context import OrtContext


def fold_weight_casts(g: Graph, ctx: OrtContext) -> int:
    count = 0
    for node in [n for n in g.nodes("Cast") if g.is_const(n.input[0])]:
        to = next(a.i for a in node.attribute if a.name == "to")
        array = g.const(node.input[0]).astype(helper.tensor_dtype_to_np_dtype(to))
        folded = g.add_const(node.input[0] + ".folded", np.asarray(array))
        g.replace([node], [], rename={node.output[0]: folded})
        count += 1
    g.remove_dead()
    return count
