"""cos/sin caches [max_positions, head_dim / 2] for the contrib rotary ops, read off the graph's rotary tables.

The portable graph computes cos(position * inv_freq) * scaling on the fly; the fused ops look
rows up instead, so the inverse frequencies and the scaling are taken from its constants.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..graph import Graph, Reject
from .context import OrtContext

POSITION_IDS = "position_ids"


def _inv_freq_and_scaling(g: Graph, table: str) -> tuple[np.ndarray, float]:
    """table: [batch, 1, seq, head_dim] = Unsqueeze(Cast?(Mul?(Cos(Concat(f, f)), scaling)))."""
    value = g.skip(g.expect(table, "Unsqueeze").input[0])
    scaling = 1.0
    node = g.producer.get(value)
    if node is not None and node.op_type == "Mul":
        const = next((i for i in node.input if g.is_const(i)), None)
        if const is None:
            raise Reject("rotary scaling is not a constant")
        scaling, value = g.scalar(const), next(i for i in node.input if i != const)
    trig = g.producer.get(value)
    if trig is None or trig.op_type not in ("Cos", "Sin"):
        raise Reject("rotary table is not Cos/Sin of the position angles")
    emb = g.expect(trig.input[0], "Concat")
    if len(emb.input) != 2 or emb.input[0] != emb.input[1]:
        raise Reject("rotary angles are not the rotate-half layout Concat(freqs, freqs)")
    freqs = g.expect(emb.input[0], "Mul")
    inv = next((i for i in freqs.input if g.is_const(i)), None)
    positions = next((i for i in freqs.input if i != inv), "")
    if inv is None or g.skip(g.skip(positions, "Unsqueeze")) != POSITION_IDS:
        raise Reject("rotary angles are not position_ids * constant inverse frequencies")
    return g.const(inv).astype(np.float32).reshape(-1), scaling


def rotary_caches(g: Graph, ctx: OrtContext, cos_table: str, dtype: int) -> tuple[str, str]:
    """(cos_cache, sin_cache) names, shared by every layer using the same table."""
    key = (cos_table, dtype)
    if key not in ctx.rotary:
        inv_freq, scaling = _inv_freq_and_scaling(g, cos_table)
        positions = np.arange(ctx.max_positions, dtype=np.float32)[:, None]  # [max_positions, 1]
        angles = positions * inv_freq[None, :]  # [max_positions, head_dim / 2] in fp32, as the graph
        np_type = helper.tensor_dtype_to_np_dtype(dtype)
        ctx.rotary[key] = (g.add_const("cos_cache", (np.cos(angles) * np.float32(scaling)).astype(np_type)),
                          g.add_const("sin_cache", (np.sin(angles) * np.float32(scaling)).astype(np_type)))
    return ctx.rotary[key]
