"""QKNormRotaryPacked → our GroupQueryAttention: Qwen3's q/k norms and rotary inside the attention node.

Qwen3 with our ops normalizes and rotates q and k in a node of their own between the packed QKV
projection and attention: one launch more per layer in every decode step, and in a prompt one more pass
over the [tokens, (heads + 2 * kv_heads) * head_dim] activation (16 MB per layer for Qwen3-0.6B's 1,024
tokens). Our GroupQueryAttention normalizes each head as it rotates it (q_norm_weight, k_norm_weight).
Its rotary takes positions from seqlens_k, where the norm node read position_ids: the same positions
wherever a row's position ids count up from its past, as every runner here and onnxruntime-genai feed
them and as ONNX Runtime's rotary GroupQueryAttention (Qwen2's graphs) already assumes.
Runs after attention.py made the node ours.
"""

from __future__ import annotations

from onnx import NodeProto

from ....kernels.schemas import DOMAIN
from ...graph import Graph, Reject, attributes
from ...ort.context import OrtContext
from ...ort.rotary_cache import POSITION_IDS

ANCHOR = f"{DOMAIN}:GroupQueryAttention"
NORM = "QKNormRotaryPacked"
QUERY, KEY, VALUE, COS, SIN = 0, 1, 2, 7, 8  # GroupQueryAttention's inputs


def match(g: Graph, gqa: NodeProto, ctx: OrtContext) -> tuple[NodeProto, NodeProto]:
    norm = g.producer.get(gqa.input[QUERY])
    if norm is None or (norm.domain, norm.op_type) != (DOMAIN, NORM):
        raise Reject(f"query does not come from {NORM}")
    if g.uses(norm.output[0]) != 1:
        raise Reject(f"{norm.name}'s output has other uses")
    if any(gqa.input[KEY:VALUE + 1]) or attributes(gqa).get("do_rotary", 0):
        raise Reject("attention already rotates, or takes key and value apart")
    if norm.input[3] != POSITION_IDS:
        raise Reject(f"rotates at {norm.input[3]}, not the graph's position_ids")
    return gqa, norm


def rewrite(g: Graph, found: tuple[NodeProto, NodeProto], ctx: OrtContext) -> None:
    gqa, norm = found
    qkv, q_norm, k_norm, _, cos, sin = norm.input  # QKNormRotaryPacked's inputs
    inputs = [qkv, *gqa.input[KEY:COS], cos, sin, q_norm, k_norm]
    attrs = {**attributes(gqa), "do_rotary": 1, "epsilon": attributes(norm)["epsilon"]}
    g.replace([norm, gqa], [g.make(gqa.op_type, inputs, list(gqa.output), gqa.name, domain=DOMAIN, **attrs)])
