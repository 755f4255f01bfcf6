"""MatMulNBits → qwdeploy QuantLinear: the same weights, scales and zero points, read where they lie.

ONNX Runtime's CPU MatMulNBits prepacks every weight into a second, private copy at session start,
so decoding holds both (the mapped file and the packed copy); QuantLinear's kernel
(kernels/cpu/quant_linear.cc) streams the int4/int8 bytes as exported, with int8 activations and the
CPU's integer dot product, as MatMulNBits does at accuracy_level 4. Runs after every other quantized
fusion (QuantSwiGLU takes the gate/up MatMulNBits first), in CPU pipelines that emit our ops.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto

from ....kernels.schemas import DOMAIN
from ...graph import Graph, Reject, attributes
from ...ort.context import OrtContext
from ...ort.fusions import MS

ANCHOR = f"{MS}:MatMulNBits"
CARRIED = ("K", "N", "bits", "block_size", "accuracy_level")


def match(g: Graph, matmul: NodeProto, ctx: OrtContext) -> NodeProto:
    attrs = attributes(matmul)
    if attrs.get("accuracy_level", 0) != 4:
        raise Reject(f"accuracy_level {attrs.get('accuracy_level', 0)}: float activations, which ONNX Runtime's "
                     "MatMulNBits computes faster than QuantLinear's float path")
    if attrs.get("bits", 4) not in (4, 8):
        raise Reject(f"{attrs['bits']}-bit weights; QuantLinear takes 4 or 8")
    if len(matmul.input) > 4 and matmul.input[4]:
        raise Reject("a g_idx (act-order) input, which QuantLinear does not take")
    if not all(g.is_const(name) for name in matmul.input[1:4] if name):
        raise Reject("weights, scales or zero points are computed in the graph, not stored")
    if g.elem_type(matmul.input[2]) != TensorProto.FLOAT:
        raise Reject("float16 scales in MatMulNBits: a float16 graph, and QuantLinear takes float32 activations")
    if len(matmul.input) > 3 and matmul.input[3] and g.elem_type(matmul.input[3]) != TensorProto.UINT8:
        raise Reject("float zero points; QuantLinear reads them packed in uint8")
    return matmul


def rewrite(g: Graph, matmul: NodeProto, ctx: OrtContext) -> None:
    a, b, scales, zero_points, _, bias = [*matmul.input, *[""] * 6][:6]  # MatMulNBits' inputs; g_idx is refused
    inputs = [a, b, scales, zero_points, bias]
    while not inputs[-1]:
        inputs.pop()  # trailing optional inputs are left off
    attrs = {k: v for k, v in attributes(matmul).items() if k in CARRIED} | {"row_tile": 1}
    name = matmul.name.rsplit("/", 1)[0] + "/QuantLinear"
    g.replace([matmul], [g.make("QuantLinear", inputs, list(matmul.output), name, domain=DOMAIN, **attrs)])
