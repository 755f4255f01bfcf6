"""half_scales (backends/cpu/half_scales.py): a default CPU int4 export gives QuantLinear and QuantSwiGLU
float16 block scales, keeps the tied embedding's lookup on float32 ones, and computes exactly what the same
graph computes with those scales widened back to float32 (the quantizer rounded them to float16 already)."""

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from backend_helpers import assert_same_logits_as


def _scale_types(model: onnx.ModelProto) -> dict[str, set[int]]:
    types = {t.name: t.data_type for t in model.graph.initializer}
    found: dict[str, set[int]] = {}
    for node in model.graph.node:
        if node.op_type in ("QuantLinear", "QuantSwiGLU", "GatherBlockQuantized"):
            found.setdefault(node.op_type, set()).add(types[node.input[2]])
    return found


def test_quantized_ops_take_float16_scales_and_compute_the_same(exported, tmp_path, kernel_library):
    folder = exported("qwen2", target="cpu", quant="int4")
    model = onnx.load(str(folder / "model.onnx"))
    assert _scale_types(model) == {"QuantLinear": {TensorProto.FLOAT16}, "QuantSwiGLU": {TensorProto.FLOAT16},
                                   "GatherBlockQuantized": {TensorProto.FLOAT}}
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            widened = numpy_helper.to_array(tensor, base_dir=str(folder)).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(widened, tensor.name))
    assert_same_logits_as(folder, model, tmp_path, kernel_library)


def test_float32_scales_stay_where_asked(exported):
    model = onnx.load(str(exported("qwen2", target="cpu", quant="int4", scale_dtype="f32") / "model.onnx"),
                      load_external_data=False)
    assert _scale_types(model) == {"QuantLinear": {TensorProto.FLOAT}, "QuantSwiGLU": {TensorProto.FLOAT},
                                   "GatherBlockQuantized": {TensorProto.FLOAT}}
