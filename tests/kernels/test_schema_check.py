"""backends/ort/check.py holds every qwdeploy node to the element types of kernels/schemas.py wherever the graph
states them, and the built library registers exactly those types: a float16 node is refused on both sides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, load_model, numpy_helper, save_model

from qwdeploy.backends.ort.check import check_artifact, open_session
from qwdeploy.kernels.build import Build
from qwdeploy.kernels.schemas import DOMAIN, DOMAIN_VERSION
from qwdeploy.toolkit.errors import QwdeployError

ROWS, K, INTER, BLOCK = 3, 32, 8, 16
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
NO_SESSION = "onnx.checker, op schemas; no session"


def _save(path: Path, nodes: list, inputs: list, initializers: list, value_info: list = ()) -> Path:
    output = helper.make_tensor_value_info("Y", FLOAT, [ROWS, INTER])
    graph = helper.make_graph(nodes, "schema_check", inputs, [output], initializers, value_info=list(value_info))
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])
    save_model(model, str(path))
    return path


def swiglu_via_graph_input(path: Path, dtype: int) -> Path:
    node = helper.make_node("SwiGLU", ["gate_up"], ["Y"], "mlp/SwiGLU", domain=DOMAIN)
    return _save(path, [node], [helper.make_tensor_value_info("gate_up", dtype, [ROWS, 2 * INTER])], [])


def swiglu_via_value_info(path: Path, dtype: int) -> Path:
    """gate_up is computed in the graph (a Cast): only value_info says its type."""
    nodes = [helper.make_node("Cast", ["x"], ["gate_up"], "cast", to=dtype),
             helper.make_node("SwiGLU", ["gate_up"], ["Y"], "mlp/SwiGLU", domain=DOMAIN)]
    return _save(path, nodes, [helper.make_tensor_value_info("x", FLOAT, [ROWS, 2 * INTER])], [],
                 [helper.make_tensor_value_info("gate_up", dtype, [ROWS, 2 * INTER])])


def quant_linear_via_initializer(path: Path, dtype: int, scales_dtype: int = FLOAT) -> Path:
    """The bias is an initializer of `dtype`. Only the types and shapes matter to the check: the weights stay
    zero."""
    packed = np.zeros((INTER, K // BLOCK, BLOCK // 2), np.uint8)  # int4, two per byte
    scales = np.ones(INTER * K // BLOCK, helper.tensor_dtype_to_np_dtype(scales_dtype))
    bias = np.ones(INTER, helper.tensor_dtype_to_np_dtype(dtype))
    node = helper.make_node("QuantLinear", ["X", "B", "scales", "", "bias"], ["Y"], "attn/QuantLinear", domain=DOMAIN,
                            K=K, N=INTER, bits=4, block_size=BLOCK, accuracy_level=0, row_tile=1)
    return _save(path, [node], [helper.make_tensor_value_info("X", FLOAT, [ROWS, K])],
                 [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "scales"),
                  numpy_helper.from_array(bias, "bias")])


GRAPHS = {  # how the float16 reaches the node → (graph, the message naming it)
    "graph input": (swiglu_via_graph_input, "mlp/SwiGLU: input 'gate_up' is float16"),
    "value_info": (swiglu_via_value_info, "mlp/SwiGLU: input 'gate_up' is float16"),
    "initializer": (quant_linear_via_initializer, "attn/QuantLinear: input 'bias' is float16"),
}


@pytest.mark.parametrize("how", GRAPHS)
def test_float16_input_is_refused(tmp_path: Path, how: str):
    make, problem = GRAPHS[how]
    path = make(tmp_path / "model.onnx", HALF)
    with pytest.raises(QwdeployError, match=f"{problem}, the {DOMAIN} kernels take float32"):
        check_artifact(path, ["CPUExecutionProvider"], None)


@pytest.mark.parametrize("how", GRAPHS)
def test_float32_input_passes(tmp_path: Path, how: str):
    path = GRAPHS[how][0](tmp_path / "model.onnx", FLOAT)
    assert check_artifact(path, ["CPUExecutionProvider"], None).startswith(NO_SESSION)


def test_float16_output_is_refused(tmp_path: Path):
    path = swiglu_via_graph_input(tmp_path / "model.onnx", FLOAT)
    model = load_model(str(path))
    model.graph.output[0].type.tensor_type.elem_type = HALF
    save_model(model, str(path))
    with pytest.raises(QwdeployError, match=f"output 'Y' is float16, the {DOMAIN} kernels return float32"):
        check_artifact(path, ["CPUExecutionProvider"], None)


@pytest.mark.parametrize("how", GRAPHS)
def test_the_library_agrees(tmp_path: Path, how: str, host_build: Build):
    """ONNX Runtime, given the kernels, accepts what the check passes and refuses what it refuses."""
    make = GRAPHS[how][0]
    open_session(make(tmp_path / "fp32.onnx", FLOAT), ["CPUExecutionProvider"], host_build.library)
    with pytest.raises(QwdeployError, match="ONNX Runtime refuses the fused graph.*Type Error"):
        open_session(make(tmp_path / "fp16.onnx", HALF), ["CPUExecutionProvider"], host_build.library)


def test_float16_scales_are_taken(tmp_path: Path, host_build: Build):
    """QuantLinear/QuantSwiGLU read block scales in float16 too (kernels/schemas.py): the check passes them and
    the library registers them; another element type is refused by both."""
    path = quant_linear_via_initializer(tmp_path / "fp16.onnx", FLOAT, scales_dtype=HALF)
    assert check_artifact(path, ["CPUExecutionProvider"], None).startswith(NO_SESSION)
    open_session(path, ["CPUExecutionProvider"], host_build.library)
    path = quant_linear_via_initializer(tmp_path / "fp64.onnx", FLOAT, scales_dtype=TensorProto.DOUBLE)
    with pytest.raises(QwdeployError, match="input 'scales' is float64, the qwdeploy kernels take float32 or float16"):
        check_artifact(path, ["CPUExecutionProvider"], None)
