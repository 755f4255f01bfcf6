"""A tied float LM head, Gemm(x, table, transB=1) on the embedding table, → qwdeploy Linear on that table.

With tied embeddings the lookup (a Gather) and the head read one float table. ONNX Runtime prepacks a
Gemm's constant B into a private copy at session start while the lookup keeps the mapped original, so
a float32 Qwen2.5-0.5B decodes holding its 545 MB table twice (peak RSS: the folder + 601 MiB, + 81 MiB
with prepacking off). Linear (kernels/cpu/linear.cc) reads the table where it lies, each row once per
call for every token. Untied heads keep the Gemm: its prepacked copy replaces the original.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto

from ....kernels.schemas import DOMAIN, DOMAIN_VERSION
from ...graph import Graph, Reject, attributes
from ...ort.context import OrtContext

ANCHOR = ":Gemm"
B, C = 1, 2  # Gemm's weight and bias inputs
DATA = 0  # Gather's


def match(g: Graph, gemm: NodeProto, ctx: OrtContext) -> NodeProto:
    attrs = attributes(gemm)
    if attrs.get("transA", 0) or not attrs.get("transB", 0):
        raise Reject("not x @ W^T: Linear takes W as stored, [N, K]")
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise Reject("alpha or beta other than 1")
    table = gemm.input[B]
    if not g.is_const(table) or g.elem_type(table) != TensorProto.FLOAT:
        raise Reject("B is not a stored float32 tensor")
    if not any(n.op_type == "Gather" and n.input[DATA] == table for n in g.users(table)):
        raise Reject("B is not also a lookup's table: ONNX Runtime's prepacked copy replaces it, no second copy")
    if len(gemm.input) > C and gemm.input[C]:
        bias = gemm.input[C]
        if not g.is_const(bias) or g.const(bias).shape != g.const(table).shape[:1]:
            raise Reject("C is not a stored [N] bias")
    return gemm


def rewrite(g: Graph, gemm: NodeProto, ctx: OrtContext) -> None:
    inputs = [name for name in gemm.input[:C + 1] if name]
    name = gemm.name.rsplit("/", 1)[0] + "/Linear"
    g.replace([gemm], [g.make("Linear", inputs, list(gemm.output), name, domain=DOMAIN)])
    g.add_opset(DOMAIN, DOMAIN_VERSION)
