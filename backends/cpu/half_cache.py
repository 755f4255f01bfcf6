"""A float16 KV cache for our GroupQueryAttention (-O kv_dtype=f16, the CPU int4/int8 default).

Each decode step reads the whole cache once per layer: Qwen3-0.6B's float32 cache is 229 KB a token (8 kv
heads x 128 x K and V x 28 layers x 4 bytes), so after 1,024 tokens a step reads 235 MB of cache beside
~370 MB of int4 weights. Our kernel stores the new keys (rotated) and values as float16 and widens them as its products read
them (kernels/cpu/attention.h); the runners and onnxruntime-genai take the cache's type from the graph.
All layers or none: a past some other node reads keeps the whole cache float32.
"""

from __future__ import annotations

from onnx import TensorProto

from ...kernels.schemas import DOMAIN
from ..graph import Graph
from ..ort.context import OrtContext

OP = "GroupQueryAttention"
PAST = (3, 4)  # past_key, past_value
PRESENT = (1, 2)  # present_key, present_value


def half_cache(g: Graph, ctx: OrtContext) -> int:
    """Retypes every past and present of the cache to float16 where our attention alone reads and writes
    them; returns how many nodes now take a float16 cache."""
    if not ctx.half_cache:
        return 0
    nodes = g.nodes(OP, DOMAIN)
    pasts = {n.input[i] for n in nodes for i in PAST}
    presents = {n.output[i] for n in nodes for i in PRESENT}
    graph = g.model.graph
    cache = [v for v in (*graph.input, *graph.output) if v.name in pasts | presents]
    if not nodes or len(cache) != len(pasts | presents) or any(g.uses(v.name) != 1 for v in cache):
        return 0
    for v in (*cache, *(v for v in graph.value_info if v.name in presents)):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    return len(nodes)
