"""Float16 block scales for QuantLinear and QuantSwiGLU, which read them as stored.

Decode streams every weight byte once per token. At int4 in blocks of 32 a float32 scale is a fifth of
those bytes (5 bits per weight), a float16 one a ninth (4.5); decode widens them as it streams each row,
prefill into a float copy per task. The quantizer has already rounded every scale to float16
(-O scale_dtype=f16, the CPU default), so the cast loses nothing. Scales another node also reads (the
tied embedding's GatherBlockQuantized, whose output takes its scales' type) keep their float32 tensor
and the op gets a float16 copy: the lookup touches one row of them per token, the LM head all of them.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ...kernels.schemas import DOMAIN
from ..graph import Graph, attributes
from ..ort.context import OrtContext

OPS = ("QuantLinear", "QuantSwiGLU")
SCALES = 2  # the scales input of both ops


def half_scales(g: Graph, ctx: OrtContext) -> int:
    """Gives every QuantLinear/QuantSwiGLU float16 scales where the quantizer rounded them; returns how many."""
    if ctx.quant is None or ctx.quant.scale_dtype != "f16":
        return 0
    halves: dict[str, str] = {}  # float32 scales → their float16 tensor, made once for every user
    nodes = [n for op in OPS for n in g.nodes(op, DOMAIN) if g.elem_type(n.input[SCALES]) == TensorProto.FLOAT]
    for node in nodes:
        scales = node.input[SCALES]
        if scales not in halves:
            halves[scales] = g.add_const(f"{scales}.f16", g.const(scales).astype(np.float16))
        inputs = [*node.input[:SCALES], halves[scales], *node.input[SCALES + 1:]]
        attrs = attributes(node)
        g.replace([node], [g.make(node.op_type, inputs, list(node.output), node.name, domain=DOMAIN, **attrs)])
    return len(nodes)
