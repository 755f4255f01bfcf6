"""Attention with a concatenated KV cache (+ rotary, + Qwen3 q/k norm) → GroupQueryAttention (com.microsoft).

Pattern, anchored at the Softmax of the portable graph's attention:
    q = rotary(Transpose(norm?(Reshape(q_proj)))), k likewise, v = Transpose(Reshape(v_proj))
    present_k = Concat(past_k, k), present_v = Concat(past_v, v)
    out = Reshape(Transpose(MatMul(Softmax(scale * q @ present_k^T + mask), present_v)))
Rotary becomes do_rotary with cos/sin caches. Qwen3's per-head q/k norms, by ctx.qk_norm:
  "gqa":      GroupQueryAttention's q/k_norm_weight inputs (CUDA; its CPU kernel lacks them);
  "qwdeploy": our QKNormRotary op normalizes and rotates, GroupQueryAttention only attends
              (packed_qkv then makes it QKNormRotaryPacked on the packed projection);
  "separate": the norms stay as they are (a later pass fuses them) and a Reshape feeds GQA.
Positions come from seqlens_k (right-padded batches), or from position_ids with QKNormRotary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx import NodeProto

from ....kernels.schemas import DOMAIN, DOMAIN_VERSION
from ...graph import Graph, Reject
from ..context import OrtContext
from ..lengths import attention_lengths
from ..rotary_cache import POSITION_IDS, rotary_caches
from . import MS, rms_norm

ANCHOR = "Softmax"


@dataclass(frozen=True)
class Head:
    proj: str  # [batch, seq, heads * head_dim] before the head split
    heads: int
    norm: rms_norm.Found | None
    cos: str | None


def _head(g: Graph, value: str, rotated: bool, ctx: OrtContext) -> Head:
    """Walk back from a rotated (or, for v, plain) [batch, heads, seq, head_dim] tensor to its projection."""
    cos = None
    if rotated:
        add = g.expect(value, "Add")
        mul = g.expect(add.input[0], "Mul")
        value, cos = mul.input[0], mul.input[1]
    value = g.expect(value, "Transpose").input[0]
    norm = None
    node = g.producer.get(value)
    if node is not None and node.op_type == "Mul":
        norm = rms_norm.match(g, node, ctx)
        value = norm.x
    reshape = g.expect(value, "Reshape")
    shape = g.const(reshape.input[1]).tolist()
    if len(shape) != 4:
        raise Reject(f"head split reshapes to {shape}, expected [batch, seq, heads, head_dim]")
    return Head(reshape.input[0], shape[2], norm, cos)


def match(g: Graph, softmax: NodeProto, ctx: OrtContext) -> dict:
    if next((a.i for a in softmax.attribute if a.name == "axis"), -1) != -1:
        raise Reject("softmax is not over the key axis")
    add = g.expect(softmax.input[0], "Add")
    g.expect(add.input[1], "Where")  # the causal + padding mask GroupQueryAttention rebuilds from seqlens_k
    mul = g.expect(add.input[0], "Mul")
    if not g.is_const(mul.input[1]):
        raise Reject("attention scale is not a constant")
    scores = g.expect(g.skip(g.expect(mul.input[0], "Reshape").input[0]), "MatMul")
    present_k = g.expect(g.expect(scores.input[1], "Transpose").input[0], "Concat")
    q = _head(g, g.expect(scores.input[0], "Reshape").input[0], rotated=True, ctx=ctx)
    value = softmax.output[0]
    if [n.op_type for n in g.users(value)] == ["Cast"]:
        value = g.follow(value, "Cast").output[0]
    probs = g.follow(g.follow(value, "Reshape").output[0], "MatMul")  # [batch, kv_heads, group * seq, head_dim]
    present_v = g.expect(probs.input[1], "Concat")
    out = g.follow(g.follow(g.follow(probs.output[0], "Reshape").output[0], "Transpose").output[0], "Reshape")
    for concat in (present_k, present_v):
        if concat.input[0] not in g.inputs or concat.output[0] not in g.outputs:
            raise Reject(f"{concat.name} does not append to a past KV graph input")
    k = _head(g, present_k.input[1], rotated=True, ctx=ctx)
    v = _head(g, present_v.input[1], rotated=False, ctx=ctx)
    if q.cos != k.cos:
        raise Reject("q and k are rotated with different tables")
    if (q.norm is None) != (k.norm is None):
        raise Reject("only one of q and k is normalized")
    return dict(q=q, k=k, v=v, scale=g.scalar(mul.input[1]), present_k=present_k, present_v=present_v, out=out)


def _separate_norm(g: Graph, head: Head) -> str:
    """[batch, seq, heads * head_dim] from the normalized 4-D heads, for GQA's 3-D inputs."""
    flat = g.add_const("heads_to_hidden", np.array([0, 0, -1], np.int64))
    reshape = g.make("Reshape", [head.norm.nodes[0].output[0], flat], 1, head.norm.nodes[0].name + "_flat")
    g.append(reshape)
    return reshape.output[0]


def rewrite(g: Graph, f: dict, ctx: OrtContext) -> None:
    q, k, v = f["q"], f["k"], f["v"]
    past_k, past_v = f["present_k"].input[0], f["present_v"].input[0]
    seqlens, total = attention_lengths(g, ctx)
    cos, sin = rotary_caches(g, ctx, q.cos, g.elem_type(past_k))
    mode = ctx.qk_norm if q.norm is not None else None
    scope = f["out"].name.rsplit("/", 1)[0]
    q_in, k_in, extra = q.proj, k.proj, []
    attrs = dict(num_heads=q.heads, kv_num_heads=k.heads, do_rotary=1, scale=f["scale"])
    if mode == "qwdeploy":
        fused = g.make("QKNormRotary", [q.proj, k.proj, q.norm.weight, k.norm.weight, POSITION_IDS, cos, sin], 2,
                       f"{scope}/QKNormRotary", domain=DOMAIN, num_heads=q.heads, kv_num_heads=k.heads,
                       epsilon=q.norm.eps)
        g.add_opset(DOMAIN, DOMAIN_VERSION)
        extra, (q_in, k_in), attrs["do_rotary"] = [fused], fused.output, 0
    elif mode == "separate":
        q_in, k_in = _separate_norm(g, q), _separate_norm(g, k)
    inputs = [q_in, k_in, v.proj, past_k, past_v, seqlens, total, *((cos, sin) if attrs["do_rotary"] else ())]
    if mode == "gqa":
        inputs += ["", "", "", "", "", q.norm.weight, k.norm.weight]
        attrs.update(q_norm_epsilon=q.norm.eps, k_norm_epsilon=k.norm.eps)
    outputs = [f["out"].output[0], f["present_k"].output[0], f["present_v"].output[0]]
    g.add_opset(MS, 1)
    gqa = g.make("GroupQueryAttention", inputs, outputs, f"{scope}/GroupQueryAttention", domain=MS, **attrs)
    g.replace([f["present_k"], f["present_v"], f["out"]], [*extra, gqa])
