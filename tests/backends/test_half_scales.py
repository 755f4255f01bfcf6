"""half_scales (backends/cpu/half_scales.py): a default CPU int4 export gives QuantLinear and QuantSwiGLU
float16 block scales, keeps the tied embedding's lookup on float32 ones, and computes exactly what the same
graph computes with those scales widened back to float32 (the quantizer rounded them to float16 already)."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

from qwdeploy.backends.ort.artifact import save_model

from backend_helpers import folder_session, greedy_logits


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
    save_model(model, tmp_path, source=folder)
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library))
    widened_session = ort.InferenceSession(str(tmp_path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ours, fed = greedy_logits(folder, steps=3, session=folder_session(folder))
    theirs, _ = greedy_logits(tmp_path, steps=3, forced=fed, session=widened_session)
    assert np.abs(theirs).max() > 1.0
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


def test_float32_scales_stay_where_asked(exported):
    model = onnx.load(str(exported("qwen2", target="cpu", quant="int4", scale_dtype="f32") / "model.onnx"),
                      load_external_data=False)
    assert _scale_types(model) == {"QuantLinear": {TensorProto.FLOAT}, "QuantSwiGLU": {TensorProto.FLOAT},
                                   "GatherBlockQuantized": {TensorProto.FLOAT}}
