"""The cuda backend builds here (no GPU needed) and its graph passes the check; numerics need a GPU.

Checked here: onnx.checker, every com.microsoft node against ONNX Runtime's own schemas. Not
checked here: an ONNX Runtime session (the CPU-only wheel has no CUDA kernels for SwiGLU or
GroupQueryAttention's q/k norm); test_cuda_numerics runs that where a GPU exists.
"""

import json

import onnx
import pytest

from qwdeploy.backends import BACKENDS

from backend_helpers import greedy_logits


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_cuda_int4_graph_builds_and_checks(exported, arch):
    folder = exported(arch, "cuda", "int4")
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert manifest["graph_check"].startswith("onnx.checker, op schemas")
    assert set(manifest["nodes_per_layer"].values()) == {8}  # SkipSLN x2, qkv, GQA, o, gate/up, SwiGLU, down
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert {("com.microsoft", "GroupQueryAttention"), ("com.microsoft", "SwiGLU"),
            ("com.microsoft", "MatMulNBits")} <= ops
    scales = {i.name: i.data_type for i in model.graph.initializer if i.name.endswith(".scales")}
    assert scales and set(scales.values()) == {onnx.TensorProto.FLOAT16}
    gqa = next(n for n in model.graph.node if n.op_type == "GroupQueryAttention")
    assert (len(gqa.input) > 14 and gqa.input[14] != "") == (arch == "qwen3")  # q/k norm in GQA (input 14)
    genai = json.loads((folder / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["session_options"]["provider_options"] == [{"cuda": {}}]


def test_cuda_numerics(exported):
    ok, reason = BACKENDS.get("cuda").availability()
    if not ok:
        pytest.skip(f"no CUDA here: {reason}")
    import onnxruntime as ort
    import numpy as np
    from qwdeploy.toolkit.metrics import agreement

    reference, fed = greedy_logits(exported("qwen2", "cpu", "fp32"), steps=3)
    folder = exported("qwen2", "cuda", "fp16")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CUDAExecutionProvider"])
    ours, _ = greedy_logits(folder, steps=3, forced=fed, session=session)
    result = agreement(reference, ours)
    assert result.top1 >= 0.9 and np.isfinite(ours).all(), result.summary()


def test_cuda_refuses_our_float32_kernels_in_its_fp16_graphs(exported):
    """Promise kept by refusal: our kernels take float32 (kernels/schemas.py), the cuda graphs are fp16."""
    from qwdeploy.toolkit.errors import QwdeployError

    backend = BACKENDS.get("cuda")
    with pytest.raises(QwdeployError, match="-O custom_ops=on: qwdeploy's kernels take float32 and the cuda"):
        backend.resolve_options({"custom_ops": "on"}, "int4")
    folder = exported("qwen3", "cuda", "int4", custom_ops="auto")
    custom = json.loads((folder / "qwdeploy_backend.json").read_text())["custom_ops"]
    assert (custom["requested"], custom["emitted"], custom["library"]) == ("auto", False, None)
    assert "fp16" in custom["why"]
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    assert not any(n.domain == "qwdeploy" for n in model.graph.node)
