"""GroupQueryAttention (com.microsoft) → qwdeploy GroupQueryAttention: the same inputs, outputs and cache.

ONNX Runtime's CPU kernel computes the whole [seq, total] score matrix per head with one GEMM, a softmax
over each row's causal part and a second GEMM, so a 1,024-token prefill pays for twice the causal work
and writes 4 MB of probabilities per head; it also allocates and transposes Q/K/V copies every call. Our
kernel (kernels/cpu/attention.cc) streams blocks of keys through an online softmax and skips what the
causal mask hides. Runs last in the attention phase, on what group_query_attention and packed_qkv built.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto

from ....kernels.schemas import DOMAIN, DOMAIN_VERSION, SCHEMAS
from ...graph import Graph, Reject, attributes
from ...ort.context import OrtContext
from ...ort.fusions import MS

ANCHOR = f"{MS}:GroupQueryAttention"
OP = "GroupQueryAttention"
# Attributes with these values (ONNX Runtime's defaults) are what our kernel computes; others are refused.
DEFAULTS = {"local_window_size": -1, "rotary_interleaved": 0, "softcap": 0.0, "smooth_softmax": 0}
SHARED_INPUTS = 9  # query .. sin_cache, in both ops' order; past them the two schemas differ


def match(g: Graph, gqa: NodeProto, ctx: OrtContext) -> NodeProto:
    attrs = attributes(gqa)
    for name, default in DEFAULTS.items():
        if attrs.get(name, default) != default:
            raise Reject(f"{name}={attrs[name]}, which our attention kernel does not compute")
    if any(gqa.input[SHARED_INPUTS:]):
        raise Reject("inputs past sin_cache (position ids, attention bias, head sink or q/k norms)")
    if g.elem_type(gqa.input[3]) != TensorProto.FLOAT:
        raise Reject("a float16 KV cache; our attention kernel computes in float32")
    return gqa


def rewrite(g: Graph, gqa: NodeProto, ctx: OrtContext) -> None:
    attrs = {k: v for k, v in attributes(gqa).items() if k in SCHEMAS[OP].attributes}
    attrs["bf16_products"] = int(ctx.attention_bf16)
    inputs = list(gqa.input[:SHARED_INPUTS])
    g.add_opset(DOMAIN, DOMAIN_VERSION)
    g.replace([gqa], [g.make(OP, inputs, list(gqa.output), gqa.name, domain=DOMAIN, **attrs)])
