"""Sparse MoE block: fp32 router softmax, top-k, and only the chosen experts run on each token.

Formulation (standard ops only): for expert e, NonZero(top_k_ids == e) lists its (token, slot)
pairs; its MLP runs on just those tokens, scaled by their routing weights. Every (token, slot) pair
belongs to exactly one expert, so one ScatterND places all results into [tokens, top_k, hidden]
without collisions, and a ReduceSum over the slots finishes the block. Work is proportional to
tokens * top_k, not tokens * num_experts; the cost is a few small ops per expert in the graph.
"""

from __future__ import annotations

from onnx import helper

from ...toolkit.spec import ModelSpec
from .builder import FLOAT, GraphBuilder
from .layers import linear, swiglu
from .params import Params


def _expert(g: GraphBuilder, p: Params, tokens: str, top_ids: str, top_w: str, layer: int, e: int) -> tuple[str, str]:
    """(pairs [n_e, 2], weighted output [n_e, hidden]) for the tokens routed to expert e."""
    with g.scope(f"experts.{e}"):
        pairs = g.op("Transpose", g.op("NonZero", g.op("Equal", top_ids, g.const(e))))  # [n_e, 2] (token, slot)
        rows = g.op("Gather", pairs, g.const(0), axis=1)  # [n_e]
        x = g.op("Gather", tokens, rows, axis=0)  # [n_e, hidden]
        y = swiglu(g, x, *(p.matrix(r, layer, e) for r in ("ffn_gate_exp", "ffn_up_exp", "ffn_down_exp")))
        weight = g.unsqueeze(g.op("GatherND", top_w, pairs), [1])  # [n_e, 1]
        return pairs, g.op("Mul", y, weight)  # [n_e, hidden]


def sparse_moe(g: GraphBuilder, p: Params, spec: ModelSpec, x: str, layer: int, compute: int) -> str:
    """x: [batch, seq, hidden] → [batch, seq, hidden]."""
    moe = spec.moe
    with g.scope("moe"):
        tokens = g.reshape(x, [-1, spec.hidden_size])  # [tokens, hidden]
        router = g.op("MatMul", tokens, p.matrix("ffn_gate_inp", layer))  # [tokens, experts]
        probs = g.op("Softmax", g.cast(router, FLOAT, compute), axis=-1)  # fp32, as transformers
        top_w, top_ids = g.op("TopK", probs, g.const([moe.top_k]), axis=-1, outputs=2)  # [tokens, top_k]
        if moe.norm_topk_prob:
            top_w = g.op("Div", top_w, g.reduce("ReduceSum", top_w, [-1]))
        top_w = g.cast(top_w, compute, FLOAT)
        results = [_expert(g, p, tokens, top_ids, top_w, layer, e) for e in range(moe.num_experts)]
        pairs = g.op("Concat", *(r[0] for r in results), axis=0)  # [tokens * top_k, 2]
        outs = g.op("Concat", *(r[1] for r in results), axis=0)  # [tokens * top_k, hidden]
        slots_shape = g.op("Concat", g.op("Shape", top_ids), g.const([spec.hidden_size]), axis=0)
        zero = helper.make_tensor("zero", compute, [1], [0.0])
        zeros = g.op("ConstantOfShape", slots_shape, value=zero)  # [tokens, top_k, hidden]
        routed = g.reduce("ReduceSum", g.op("ScatterND", zeros, pairs, outs), [1], keepdims=0)  # [tokens, hidden]
        if moe.shared_expert_intermediate_size:
            with g.scope("shared_expert"):
                roles = ("ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp")
                shared = swiglu(g, tokens, *(p.matrix(r, layer) for r in roles))
                gate = g.op("Sigmoid", linear(g, tokens, p.matrix("ffn_gate_inp_shexp", layer)))  # [tokens, 1]
                routed = g.op("Add", routed, g.op("Mul", gate, shared))
        return g.reshape(routed, g.op("Shape", x))

