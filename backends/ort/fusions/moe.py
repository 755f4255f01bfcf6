"""The exporter's sparse MoE block → one qwdeploy MoE node (QMoE when the pipeline quantizes).

Pattern (exporters/onnx/moe.py), anchored at the TopK:
    probs = Softmax(Cast?(router_logits = MatMul(tokens, W_router)))          # [T, E]
    w, ids = TopK(probs, k); w = Div(w, ReduceSum(w))?; w = Cast?(w)          # [T, k]
    per expert e: pairs_e = Transpose(NonZero(Equal(ids, e)))                 # [n_e, 2]
                  out_e = expert_mlp(Gather(tokens, pairs_e[:, 0])) * GatherND(w, pairs_e)
    routed = ReduceSum(ScatterND(zeros, Concat(pairs_e...), Concat(out_e...)), [1])
    routed = Add(routed, Sigmoid(MatMul(tokens, W_sg)) * shared_mlp(tokens))? # Qwen2-MoE shared expert
The check verifies the routing against the model spec (ctx.moe) when given: expert
count, top_k and whether the weights are renormalised. Expert weights are packed per
kernels/schemas.py: gate_up [E, 2I, H] (gate rows first), down [E, H, I]; QMoE stores them
symmetric block-quantized (MatMulNBits' layout with the implicit zero point 2^(bits-1)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto

from ....kernels.schemas import DOMAIN, DOMAIN_VERSION
from ...graph import Graph, Reject
from ..context import OrtContext
from ..moe_experts import Mlp, expert_of, mlp
from ..quant.blockwise import quantize
from ..quant.config import QuantConfig

ANCHOR = "TopK"


@dataclass(frozen=True)
class Found:
    tokens: str  # [T, H]
    router_logits: str  # [T, E]
    top_k: int
    normalize: bool
    experts: list[Mlp]  # in expert-id order
    shared: Mlp | None
    shared_gate: str | None  # [H, 1] constant
    output: NodeProto  # the node whose output the fused op produces
    scope: str


def _routing(g: Graph, topk: NodeProto) -> tuple[str, str, int, bool, str]:
    """(tokens, router_logits, k, renormalised, weights feeding the experts)."""
    if next((a.i for a in topk.attribute if a.name == "axis"), -1) != -1:
        raise Reject("TopK is not over the experts axis")
    if next((a.i for a in topk.attribute if a.name == "largest"), 1) != 1:
        raise Reject("TopK picks the smallest values")
    softmax = g.expect(topk.input[0], "Softmax", single_use=True)
    if next((a.i for a in softmax.attribute if a.name == "axis"), -1) != -1:
        raise Reject("router softmax is not over the experts axis")
    router = g.expect(g.skip(softmax.input[0]), "MatMul")
    if not g.is_const(router.input[1]) or g.const(router.input[1]).ndim != 2:
        raise Reject("router is not a MatMul by a constant matrix")
    weights, normalize = topk.output[0], False
    users = g.users(weights)
    div = next((n for n in users if n.op_type == "Div"), None)
    if div is not None:
        total = g.expect(div.input[1], "ReduceSum")
        axes = g.const(total.input[1]).tolist() if len(total.input) > 1 else None
        if div.input[0] != weights or total.input[0] != weights or axes not in ([-1], [1]):
            raise Reject("top-k weights are divided by something other than their sum over the slots")
        weights, normalize = div.output[0], True
    users = g.users(weights)
    if len(users) == 1 and users[0].op_type == "Cast":
        weights = users[0].output[0]
    return router.input[0], g.skip(softmax.input[0]), int(g.scalar(topk.input[1])), normalize, weights


def _scatter(g: Graph, ids: str) -> NodeProto:
    """The ReduceSum over slots of the ScatterND that places every expert's output."""
    shape = next((n for n in g.users(ids) if n.op_type == "Shape"), None)
    if shape is None:
        raise Reject("no Shape of the top-k ids sizes the scatter target")
    zeros = g.follow(g.follow(shape.output[0], "Concat").output[0], "ConstantOfShape")
    reduce = g.follow(g.follow(zeros.output[0], "ScatterND").output[0], "ReduceSum")
    axes = g.const(reduce.input[1]).tolist() if len(reduce.input) > 1 else None
    if axes != [1] or next((a.i for a in reduce.attribute if a.name == "keepdims"), 1):
        raise Reject("the scattered outputs are not summed over the top-k slots")
    return reduce


def _shared(g: Graph, routed: str, tokens: str) -> tuple[Mlp | None, str | None, NodeProto | None]:
    """Qwen2-MoE: Add(routed, Mul(Sigmoid(MatMul(tokens, W_sg)), shared_mlp(tokens)))."""
    users = g.users(routed)
    if len(users) != 1 or users[0].op_type != "Add":
        return None, None, None
    add = users[0]
    scaled = g.expect(add.input[1] if add.input[0] == routed else add.input[0], "Mul")
    sigmoid = next((g.producer[i] for i in scaled.input if i in g.producer and g.producer[i].op_type == "Sigmoid"),
                   None)
    if sigmoid is None:
        return None, None, None
    gate = g.expect(sigmoid.input[0], "MatMul")
    if gate.input[0] != tokens or not g.is_const(gate.input[1]) or g.const(gate.input[1]).shape[1:] != (1,):
        raise Reject("shared-expert gate is not a [H, 1] projection of the tokens")
    shared = mlp(g, next(i for i in scaled.input if i != sigmoid.output[0]))
    if shared.x != tokens:
        raise Reject("shared expert does not read the routed tokens")
    return shared, gate.input[1], add


def _swiglu_shapes(gate: tuple, up: tuple, down: tuple, hidden: int) -> bool:
    return gate == up == down[::-1] and gate[0] == hidden


def match(g: Graph, topk: NodeProto, ctx: OrtContext) -> Found:
    tokens, logits, top_k, normalize, weights = _routing(g, topk)
    num_experts = g.const(g.producer[logits].input[1]).shape[1]  # router weight [H, E]
    spec = ctx.moe
    if spec is not None:
        expected = (spec.num_experts, spec.top_k, spec.norm_topk_prob)
        if (num_experts, top_k, normalize) != expected:
            raise Reject(f"graph routes (experts, top_k, renormalised) = {(num_experts, top_k, normalize)}, "
                         f"the model spec says {expected}")
    reduce = _scatter(g, topk.output[1])
    scatter = g.producer[reduce.input[0]]
    pairs, outs = g.expect(scatter.input[1], "Concat"), g.expect(scatter.input[2], "Concat")
    if len(pairs.input) != num_experts or len(outs.input) != num_experts:
        raise Reject(f"{len(pairs.input)} expert branches for a router over {num_experts} experts")
    found = sorted((expert_of(g, p, o, tokens, topk.output[1], weights) for p, o in zip(pairs.input, outs.input)),
                   key=lambda pair: pair[0])
    if [e for e, _ in found] != list(range(num_experts)):
        raise Reject(f"expert branches select ids {[e for e, _ in found]}, not each of 0..{num_experts - 1} once")
    shapes = {(m.gate.shape, m.up.shape, m.down_weight.shape) for _, m in found}
    if len(shapes) != 1 or not _swiglu_shapes(*shapes.pop(), g.const(g.producer[logits].input[1]).shape[0]):
        raise Reject("expert weights are not [H, I], [H, I], [I, H] alike for every expert")
    shared, shared_gate, add = _shared(g, reduce.output[0], tokens)
    if ctx.quant is not None and not ctx.quant.symmetric:
        raise Reject("QMoE reads symmetric weights only (symmetric=false asks for zero points)")
    return Found(tokens, logits, top_k, normalize, [m for _, m in found], shared, shared_gate,
                 add or reduce, topk.name.rsplit("/", 1)[0])


def _quantized(g: Graph, name: str, weights: np.ndarray, config: QuantConfig) -> list[str]:
    """[E, N, K] float → (packed [E, N, blocks, block*bits/8], scales [E, N, blocks]) initializer names."""
    parts = [quantize(w, config.bits, config.block_size, True, config.method, config.scale_numpy) for w in weights]
    return [g.add_const(f"{name}.qweight", np.stack([p.packed for p in parts])),
            g.add_const(f"{name}.scales", np.stack([p.scales for p in parts]).astype(weights.dtype))]


def rewrite(g: Graph, f: Found, ctx: OrtContext) -> None:
    gate_up = np.stack([m.gate_up() for m in f.experts])  # [E, 2I, H]
    down = np.stack([m.down() for m in f.experts])  # [E, H, I]
    config = ctx.quant
    attrs = dict(top_k=f.top_k, normalize_topk=int(f.normalize))
    if config is None:
        op, expert_inputs = "MoE", [g.add_const(f"{f.scope}/experts.gate_up", gate_up),
                                     g.add_const(f"{f.scope}/experts.down", down)]
    else:
        op, expert_inputs = "QMoE", [*_quantized(g, f"{f.scope}/experts.gate_up", gate_up, config),
                                      *_quantized(g, f"{f.scope}/experts.down", down, config)]
        attrs.update(bits=config.bits, block_size=config.block_size)
    shared = []
    if f.shared is not None:
        shared = [g.add_const(f"{f.scope}/shared_expert.gate_up", f.shared.gate_up()),  # [2S, H]
                  g.add_const(f"{f.scope}/shared_expert.down", f.shared.down()),  # [H, S]
                  g.add_const(f"{f.scope}/shared_expert.gate", g.const(f.shared_gate).T.copy())]  # [1, H]
    g.add_opset(DOMAIN, DOMAIN_VERSION)
    node = g.make(op, [f.tokens, f.router_logits, *expert_inputs, *shared], list(f.output.output),
                  f"{f.scope}/{op}", domain=DOMAIN, **attrs)
    g.replace([f.output], [node])  # the per-expert branches are left dead
