"""seqlens_k and total_sequence_length, the KV-cache inputs GroupQueryAttention needs, from attention_mask.

Added once per graph and shared by every attention node. GroupQueryAttention reads them as
"valid tokens - 1" per row and the padded total length, so batches must be right-padded (or
unpadded), which is how onnxruntime-genai feeds a decoder.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..graph import Graph
from .context import OrtContext

ATTENTION_MASK = "attention_mask"
SCOPE = "/attention_lengths"


def attention_lengths(g: Graph, ctx: OrtContext) -> tuple[str, str]:
    """(seqlens_k [batch] int32, total_sequence_length scalar int32), built on first use."""
    if ctx.lengths is not None:
        return ctx.lengths
    axes, one, index = g.add_const("lengths_axes", np.array([1], np.int64)), g.add_const(
        "lengths_one", np.array(1, np.int64)), g.add_const("lengths_index", np.array(1, np.int64))
    total_tokens = g.make("ReduceSum", [ATTENTION_MASK, axes], 1, f"{SCOPE}/ReduceSum", keepdims=0)  # [batch]
    minus_one = g.make("Sub", [total_tokens.output[0], one], 1, f"{SCOPE}/Sub")
    seqlens = g.make("Cast", [minus_one.output[0]], 1, f"{SCOPE}/Cast", to=TensorProto.INT32)
    shape = g.make("Shape", [ATTENTION_MASK], 1, f"{SCOPE}/Shape")  # [2]
    total = g.make("Gather", [shape.output[0], index], 1, f"{SCOPE}/Gather", axis=0)  # scalar
    total32 = g.make("Cast", [total.output[0]], 1, f"{SCOPE}/Cast_total", to=TensorProto.INT32)
    g.append(total_tokens, minus_one, seqlens, shape, total, total32)
    ctx.lengths = seqlens.output[0], total32.output[0]
    return ctx.lengths
