"""An int64 input `logits_to_keep` (transformers' name) that slices the hidden states before the LM head.

Generation needs the last position's logits only. Without this, a 128-token prefill runs the LM head
(vocab x hidden: the largest matrix of a small Qwen) for all 128 positions and returns 128 x vocab
floats (78 MB for Qwen2.5-0.5B) to keep one row. Feeding 1 skips both. The input has an initializer
of 0 ("every position"), so callers that feed nothing (onnxruntime-genai, eval's perplexity, the
export check) see the graph they always saw.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ...exporters.onnx.decoder import LOGITS, LOGITS_TO_KEEP
from ..graph import Graph
from .context import OrtContext

LENGTH = "logits_length"  # the logits' sequence axis, once sliced
HEAD = "/lm_head/"  # the builder's scope names (exporters/onnx/builder.py)
INT64_MAX = np.iinfo(np.int64).max


def keep_last_logits(g: Graph, ctx: OrtContext) -> int:
    head = [n for n in g.node if n.name.startswith(HEAD)]
    if not head or LOGITS_TO_KEEP in {i.name for i in g.graph.input}:
        return 0
    produced = {o for n in head for o in n.output}
    hidden = next(i for n in head for i in n.input if i and i not in produced and not g.is_const(i))
    source = g.producer[hidden]  # the final norm: its output is renamed, and the slice takes the old name
    full = g.unique(hidden + ".all")
    copy = helper.make_node(source.op_type, list(source.input), [full if o == hidden else o for o in source.output],
                            name=source.name, domain=source.domain or None)
    copy.attribute.extend(source.attribute)
    start = g.make("Neg", [LOGITS_TO_KEEP], 1, HEAD + "keep/Neg")
    ends, axes = g.add_const(HEAD + "keep/ends", np.array([INT64_MAX])), g.add_const(HEAD + "keep/axes", np.array([1]))
    sliced = g.make("Slice", [full, start.output[0], ends, axes], [hidden], HEAD + "keep/Slice")
    g.replace([source], [copy, start, sliced])
    if g.add_const(LOGITS_TO_KEEP, np.array([0], np.int64)) != LOGITS_TO_KEEP:
        raise ValueError(f"'{LOGITS_TO_KEEP}' already names a value in the graph")
    g.graph.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [1]))
    for output in g.graph.output:
        if output.name == LOGITS:
            output.type.tensor_type.shape.dim[1].dim_param = LENGTH
    return 1
