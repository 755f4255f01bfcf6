"""Rotary position embeddings: inverse frequencies precomputed as transformers' rope init does them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...toolkit.spec import ModelSpec
from .builder import FLOAT, GraphBuilder

SUPPORTED_ROPE = ("default", "linear", "yarn")


def _default(spec: ModelSpec) -> np.ndarray:
    exponent = np.arange(0, spec.head_dim, 2, dtype=np.int64).astype(np.float32) / spec.head_dim
    return (1.0 / (spec.rope_theta ** exponent)).astype(np.float32)  # [head_dim / 2]


def _yarn(spec: ModelSpec) -> tuple[np.ndarray, float]:
    scaling = spec.rope_scaling
    params, factor, dim, base = scaling.params, scaling.factor, spec.head_dim, spec.rope_theta
    original = scaling.original_max_position_embeddings or spec.max_position_embeddings

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = params.get("attention_factor")
    if attention is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(params.get("beta_fast") or 32), correction_dim(params.get("beta_slow") or 1)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as transformers: avoid a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)  # [head_dim / 2]
    pos_freqs = (base ** (np.arange(0, dim, 2).astype(np.float32) / dim)).astype(np.float32)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq.astype(np.float32), float(attention)


def rope_parameters(spec: ModelSpec) -> tuple[np.ndarray, float]:
    """(inv_freq [head_dim / 2] fp32, attention scaling applied to cos and sin)."""
    kind = spec.rope_scaling.type if spec.rope_scaling else "default"
    if kind == "default":
        return _default(spec), 1.0
    if kind == "linear":
        return (_default(spec) / spec.rope_scaling.factor).astype(np.float32), 1.0
    if kind == "yarn":
        return _yarn(spec)
    raise ValueError(f"rope type {kind!r} is not supported")  # unsupported_reason refuses it before this


@dataclass(frozen=True)
class Rotary:
    cos: str  # [batch, 1, seq, head_dim] in compute dtype
    sin: str
    half: int


def rotary_tables(g: GraphBuilder, spec: ModelSpec, position_ids: str, compute: int) -> Rotary:
    """cos/sin of every position, once per graph (in fp32, like transformers, then cast)."""
    inv_freq, attention_scaling = rope_parameters(spec)
    with g.scope("rotary"):
        pos = g.unsqueeze(g.op("Cast", position_ids, to=FLOAT), [2])  # [batch, seq, 1]
        freqs = g.op("Mul", pos, g.const(inv_freq, np.float32))  # [batch, seq, head_dim / 2]
        emb = g.op("Concat", freqs, freqs, axis=-1)  # [batch, seq, head_dim]
        tables = []
        for fn in ("Cos", "Sin"):
            t = g.op(fn, emb)
            if attention_scaling != 1.0:
                t = g.op("Mul", t, g.const(attention_scaling, np.float32))
            tables.append(g.unsqueeze(g.cast(t, compute, FLOAT), [1]))  # [batch, 1, seq, head_dim]
    return Rotary(tables[0], tables[1], spec.head_dim // 2)


def apply_rotary(g: GraphBuilder, x: str, rotary: Rotary) -> str:
    """x * cos + rotate_half(x) * sin, x: [batch, heads, seq, head_dim]."""
    x1 = g.slice_last(x, 0, rotary.half)  # [batch, heads, seq, head_dim / 2]
    x2 = g.slice_last(x, rotary.half, 2 * rotary.half)
    rotated = g.op("Concat", g.op("Neg", x2), x1, axis=-1)  # [batch, heads, seq, head_dim]
    return g.op("Add", g.op("Mul", x, rotary.cos), g.op("Mul", rotated, rotary.sin))
