"""MatMulNBits (packed gate/up) + qwdeploy SwiGLU → qwdeploy QuantSwiGLU: the [.., 2*I] never reaches memory.

Runs after the quantization pass, only in pipelines that emit our ops. The schema
(kernels/schemas.py) takes MatMulNBits' B as is and its scales/zero points flattened.
"""

from __future__ import annotations

from onnx import NodeProto

from ....kernels.schemas import DOMAIN
from ...graph import Graph, Reject, attributes
from ..context import OrtContext

ANCHOR = f"{DOMAIN}:SwiGLU"
CARRIED = ("K", "N", "bits", "block_size", "accuracy_level")


def match(g: Graph, swiglu: NodeProto, ctx: OrtContext) -> NodeProto:
    matmul = g.expect(swiglu.input[0], "MatMulNBits", single_use=True)
    if len(matmul.input) > 4 and any(matmul.input[4:]):
        raise Reject("the gate/up projection has a bias or g_idx, which QuantSwiGLU does not take")
    return matmul


def rewrite(g: Graph, matmul: NodeProto, ctx: OrtContext) -> None:
    swiglu = g.users(matmul.output[0])[0]
    x, b, scales = matmul.input[:3]
    zero_points = matmul.input[3] if len(matmul.input) > 3 else ""
    inputs = [x, b, g.add_const(scales + ".flat", g.const(scales).reshape(-1))]
    if zero_points:
        inputs.append(g.add_const(zero_points + ".flat", g.const(zero_points).reshape(-1)))
    attrs = ({"accuracy_level": 0} | {k: v for k, v in attributes(matmul).items() if k in CARRIED}
             | {"row_tile": 1})
    name = swiglu.name.rsplit("/", 1)[0] + "/QuantSwiGLU"
    g.replace([matmul, swiglu], [g.make("QuantSwiGLU", inputs, list(swiglu.output), name, domain=DOMAIN, **attrs)])
