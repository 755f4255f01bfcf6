"""Grouped-query self-attention with a causal + padding mask and a concatenated KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...toolkit.spec import ModelSpec
from .builder import BOOL, FLOAT, GraphBuilder
from .layers import linear, rms_norm
from .params import Params
from .rope import Rotary, apply_rotary

MASKED = float(np.finfo(np.float32).min)  # what transformers adds; finite, so fully masked rows stay NaN-free


def attention_bias(g: GraphBuilder, input_ids: str, attention_mask: str) -> str:
    """Additive fp32 mask [batch, 1, seq, total_seq]: 0 where a query may attend, MASKED elsewhere."""
    with g.scope("attention_mask"):
        seq = g.dim(input_ids, 1)  # [1]
        total = g.dim(attention_mask, 1)  # [1]
        past = g.op("Sub", total, seq)
        scalar = [g.op("Squeeze", t, g.const([0])) for t in (past, total)]
        rows = g.unsqueeze(g.op("Range", scalar[0], scalar[1], g.const(1)), [1])  # [seq, 1] absolute query positions
        cols = g.unsqueeze(g.op("Range", g.const(0), scalar[1], g.const(1)), [0])  # [1, total_seq]
        causal = g.op("LessOrEqual", cols, rows)  # [seq, total_seq]
        padding = g.unsqueeze(g.op("Cast", attention_mask, to=BOOL), [1, 2])  # [batch, 1, 1, total_seq]
        allowed = g.op("And", causal, padding)  # [batch, 1, seq, total_seq]
        return g.op("Where", allowed, g.const(0.0, np.float32), g.const(MASKED, np.float32))


@dataclass(frozen=True)
class KV:
    past_key: str  # [batch, kv_heads, past_seq, head_dim]
    past_value: str
    present_key: str  # graph output names
    present_value: str


def _heads(g: GraphBuilder, p: Params, spec: ModelSpec, x: str, which: str, heads: int, layer: int) -> str:
    """Project x and split heads → [batch, seq, heads, head_dim]."""
    bias = p.tensor(f"attn_{which}_bias", layer) if p.has(f"attn_{which}_bias", layer) else None
    y = linear(g, x, p.matrix(f"attn_{which}", layer), bias)  # [batch, seq, heads * head_dim]
    return g.reshape(y, [0, 0, heads, spec.head_dim])


def self_attention(g: GraphBuilder, p: Params, spec: ModelSpec, x: str, layer: int, rotary: Rotary, bias: str,
                   kv: KV, compute: int) -> str:
    """x: [batch, seq, hidden] → [batch, seq, hidden]; writes kv.present_* as graph outputs."""
    nh, kvh, hd = spec.num_heads, spec.num_kv_heads, spec.head_dim
    with g.scope("attn"):
        q = _heads(g, p, spec, x, "q", nh, layer)  # [batch, seq, heads, head_dim]
        k = _heads(g, p, spec, x, "k", kvh, layer)  # [batch, seq, kv_heads, head_dim]
        v = _heads(g, p, spec, x, "v", kvh, layer)
        if spec.qk_norm:
            with g.scope("q_norm"):
                q = rms_norm(g, q, p.tensor("attn_q_norm", layer), spec.rms_norm_eps, compute)
            with g.scope("k_norm"):
                k = rms_norm(g, k, p.tensor("attn_k_norm", layer), spec.rms_norm_eps, compute)
        q = apply_rotary(g, g.op("Transpose", q, perm=[0, 2, 1, 3]), rotary)  # [batch, heads, seq, head_dim]
        k = apply_rotary(g, g.op("Transpose", k, perm=[0, 2, 1, 3]), rotary)  # [batch, kv_heads, seq, head_dim]
        v = g.op("Transpose", v, perm=[0, 2, 1, 3])
        g.op("Concat", kv.past_key, k, axis=2, out=kv.present_key)  # [batch, kv_heads, total_seq, head_dim]
        g.op("Concat", kv.past_value, v, axis=2, out=kv.present_value)
        # Query heads sharing a KV head are stacked along the sequence axis, so K and V are never repeated.
        grouped = g.reshape(q, [0, kvh, -1, hd])  # [batch, kv_heads, group * seq, head_dim]
        scores = g.op("MatMul", grouped, g.op("Transpose", kv.present_key, perm=[0, 1, 3, 2]))
        scores = g.reshape(g.cast(scores, FLOAT, compute), [0, nh, -1, 0])  # [batch, heads, seq, total_seq] fp32
        scores = g.op("Add", g.op("Mul", scores, g.const(hd ** -0.5, np.float32)), bias)
        probs = g.cast(g.op("Softmax", scores, axis=-1), compute, FLOAT)
        probs = g.reshape(probs, [0, kvh, -1, 0])  # [batch, kv_heads, group * seq, total_seq]
        out = g.reshape(g.op("MatMul", probs, kv.present_value), [0, nh, -1, hd])  # [batch, heads, seq, head_dim]
        out = g.reshape(g.op("Transpose", out, perm=[0, 2, 1, 3]), [0, 0, nh * hd])  # [batch, seq, heads * head_dim]
        return linear(g, out, p.matrix("attn_output", layer))

