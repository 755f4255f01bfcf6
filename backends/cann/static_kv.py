"""The portable decoder made static for ATC: a fixed KV buffer per layer, written at each token's position.

Per layer, the portable Concat(past, new) over a growing cache becomes, over buffers of `context` slots:
    present = past * keep + write @ new      # [1, kv_heads, context, head_dim]
with write[j, i] = (j == position_ids[i]) and keep[j] = 1 - sum_i write[j, i]: token i lands in slot
position_ids[i], every other slot keeps its value (a one-hot MatMul copies exactly, in fp16 too).
The additive mask becomes Where(j <= position_ids[i], 0, MASKED) over the buffer: causal, and the slots
not written yet lie past every query's position. attention_mask leaves the graph (batch 1, no padding).
No Scatter, Range or growing shape: every shape but the sequence length (ATC's gears) is fixed.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, ValueInfoProto, helper

from ...exporters.onnx.attention import MASKED
from ...exporters.onnx.decoder import ATTENTION_MASK, POSITION_IDS
from ..graph import Graph, Reject
from ..passes import Context

SCOPE = "/static_kv"


def _attention_concats(g: Graph) -> list[NodeProto]:
    """The Concats that append a layer's new keys or values to its past cache input."""
    return [n for n in g.nodes("Concat") if n.input[0] in g.inputs and n.output[0] in g.outputs
            and n.input[0].startswith("past_key_values")]


def _bias(g: Graph) -> str:
    """The portable graph's additive attention mask (one Where, shared by every layer's scores)."""
    masks = {g.expect(g.expect(s.input[0], "Add").input[1], "Where").output[0] for s in g.nodes("Softmax")
             if s.input[0] in g.producer and g.producer[s.input[0]].op_type == "Add"}
    if len(masks) != 1:
        raise Reject(f"expected one attention mask shared by the layers, found {len(masks)}")
    return masks.pop()


def _shared(g: Graph, context: int, compute: int) -> tuple[str, str, str]:
    """(write [1, 1, context, seq], keep [1, 1, context, 1], bias [1, 1, seq, context]) from position_ids.

    Reshape instead of Unsqueeze and a float comparison for the mask: the forms CANN's operator list
    documents at the profiles' opset (backends/cann/support.py)."""
    def shape(name: str, dims: list[int]) -> str:
        return g.add_const(f"static_kv.{name}", np.array(dims, np.int64))

    slots = g.add_const("static_kv.slots", np.arange(context, dtype=np.int64))  # [context]
    slots_f = g.add_const("static_kv.slots_f", np.arange(context, dtype=np.float32))  # exact below 2^24
    positions = g.make("Reshape", [POSITION_IDS, shape("positions", [1, -1, 1])], 1, f"{SCOPE}/positions")
    hit = g.make("Equal", [positions.output[0], slots], 1, f"{SCOPE}/Equal")  # [1, seq, context]
    onehot = g.make("Cast", [hit.output[0]], 1, f"{SCOPE}/onehot", to=compute)
    across = g.make("Transpose", [onehot.output[0]], 1, f"{SCOPE}/Transpose", perm=[0, 2, 1])  # [1, context, seq]
    write = g.make("Reshape", [across.output[0], shape("write", [1, 1, context, -1])], 1, f"{SCOPE}/write")
    written = g.make("ReduceSum", [write.output[0], shape("axis3", [3])], 1, f"{SCOPE}/written", keepdims=1)
    one = g.add_const("static_kv.one", np.ones((), helper.tensor_dtype_to_np_dtype(compute)))
    keep = g.make("Sub", [one, written.output[0]], 1, f"{SCOPE}/keep")  # [1, 1, context, 1]
    queries = g.make("Reshape", [POSITION_IDS, shape("queries", [1, 1, -1, 1])], 1, f"{SCOPE}/queries")
    queries_f = g.make("Cast", [queries.output[0]], 1, f"{SCOPE}/queries_f", to=TensorProto.FLOAT)
    causal = g.make("LessOrEqual", [slots_f, queries_f.output[0]], 1, f"{SCOPE}/causal")  # [1, 1, seq, context]
    bias = g.make("Where", [causal.output[0], g.add_const("static_kv.zero", np.array(0.0, np.float32)),
                            g.add_const("static_kv.masked", np.array(MASKED, np.float32))], 1, f"{SCOPE}/bias")
    g.append(positions, hit, onehot, across, write, written, keep, queries, queries_f, causal, bias)
    return write.output[0], keep.output[0], bias.output[0]


def _fix_dims(values: list[ValueInfoProto], dims: dict[int, int | str]) -> None:
    for value in values:
        shape = value.type.tensor_type.shape.dim
        for axis, size in dims.items():
            if axis < len(shape):
                shape[axis].Clear()
                if isinstance(size, int):
                    shape[axis].dim_value = size
                else:
                    shape[axis].dim_param = size


def make_static(g: Graph, ctx: Context, context: int) -> int:
    """Rewrite every layer's cache append; returns how many (two per layer)."""
    concats = _attention_concats(g)
    if not concats:
        raise Reject("no Concat appends to a past_key_values input: not a portable decoder graph")
    compute = g.elem_type(concats[0].input[0])
    bias = _bias(g)
    write, keep, static_bias = _shared(g, context, compute)
    for concat in concats:
        past, new = concat.input[0], concat.input[1]
        scope = concat.name.rsplit("/", 1)[0]
        kept = g.make("Mul", [past, keep], 1, f"{scope}/keep_cache")
        written = g.make("MatMul", [write, new], 1, f"{scope}/write_cache")  # [1, kv_heads, context, head_dim]
        g.replace([concat], [kept, written, g.make("Add", [kept.output[0], written.output[0]], list(concat.output),
                                                    f"{scope}/present")])
    g.replace([g.producer[bias]], [], rename={bias: static_bias})
    graph = g.graph
    g.drop_input(ATTENTION_MASK)
    _fix_dims(list(graph.input) + list(graph.output), {0: 1})
    _fix_dims([v for v in (*graph.input, *graph.output) if v.name.startswith(("past_key_values", "present"))],
              {2: context})
    return len(concats)
