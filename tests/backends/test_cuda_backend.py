"""The cuda backend builds here (no GPU needed) and its graph passes the check; numerics need a GPU.

Checked here: onnx.checker, every com.microsoft node against ONNX Runtime's own schemas. Not
checked here: an ONNX Runtime session (the CPU-only wheel has no CUDA kernels); test_cuda_numerics runs
the default graphs on onnxruntime-gpu where a GPU exists (1.31.1 on an H200: 2026-12-04).
"""

import json

import onnx
import pytest
from packaging.version import Version

from qwdeploy.backends import BACKENDS
from qwdeploy.toolkit.errors import QwdeployError

from backend_helpers import greedy_logits


# Nodes per decoder layer by onnxruntime-gpu release: 1.32 packs gate/up into its SwiGLU and takes Qwen3's
# q/k norms in GroupQueryAttention; 1.31 (the newest GPU wheel) keeps gate and up apart around QuickGelu and
# the q/k norms as SimplifiedLayerNormalization on separate q/k/v projections.
NODES_PER_LAYER = {("1.31", "qwen2"): 10, ("1.31", "qwen3"): 18, ("1.32", "qwen2"): 8, ("1.32", "qwen3"): 8}


@pytest.mark.parametrize("release", ["1.31", "1.32"])
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_cuda_int4_graph_builds_and_checks(exported, arch, release):
    import onnxruntime as ort

    if Version(ort.__version__) < Version(release):  # this runtime's schemas lack the newer ops: refused
        with pytest.raises(QwdeployError, match="breaks an op schema: .*(no com.microsoft:SwiGLU|q_norm_epsilon)"):
            exported(arch, "cuda", "int4", ort_release=release)
        return
    folder = exported(arch, "cuda", "int4", ort_release=release)
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert manifest["graph_check"].startswith("onnx.checker, op schemas")
    assert manifest["options"]["ort_release"] == release
    assert set(manifest["nodes_per_layer"].values()) == {NODES_PER_LAYER[release, arch]}
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert {("com.microsoft", "GroupQueryAttention"), ("com.microsoft", "MatMulNBits")} <= ops
    mlp = ("com.microsoft", "SwiGLU") if release == "1.32" else ("com.microsoft", "QuickGelu")
    assert mlp in ops and not {("com.microsoft", "SwiGLU"), ("com.microsoft", "QuickGelu")} - {mlp} & ops
    scales = {i.name: i.data_type for i in model.graph.initializer if i.name.endswith(".scales")}
    assert scales and set(scales.values()) == {onnx.TensorProto.FLOAT16}
    gqa = next(n for n in model.graph.node if n.op_type == "GroupQueryAttention")
    in_gqa = len(gqa.input) > 14 and gqa.input[14] != ""  # q/k norm weights are GQA's input 14 and 15
    assert in_gqa == (arch == "qwen3" and release == "1.32")
    assert {a.name for a in gqa.attribute} & {"q_norm_epsilon", "k_norm_epsilon"} == (
        {"q_norm_epsilon", "k_norm_epsilon"} if in_gqa else set())
    genai = json.loads((folder / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["session_options"]["provider_options"] == [{"cuda": {}}]


def test_an_unknown_ort_release_is_refused_in_one_line():
    with pytest.raises(QwdeployError, match=r"option ort_release='1.30': expected one of 1.31, 1.32"):
        BACKENDS.get("cuda").resolve_options({"ort_release": "1.30"})


# What each GPU graph is held against on the CPU: the fp32 graph, or for int4 the CPU graph of the same int4
# weights (fp16 scales, float activations, float embedding table), so the bound measures the GPU's fp16
# arithmetic, not quantization (the int4 pair agrees on 100% of positions when ONNX Runtime's CPU runs both).
CPU_TWIN = {"fp16": ("fp32", {}), "int4": ("int4", {"accuracy_level": 0, "scale_dtype": "f16", "keep": "embed"})}


@pytest.mark.parametrize(("arch", "quant"), [("qwen2", "fp16"), ("qwen3", "fp16"), ("qwen3", "int4")])
def test_cuda_numerics(exported, arch, quant):
    """The default graphs (onnxruntime-gpu 1.31's ops) on the GPU against their CPU twin, fed the same ids."""
    ok, reason = BACKENDS.get("cuda").availability()
    if not ok:
        pytest.skip(f"no CUDA here: {reason}")
    import onnxruntime as ort
    import numpy as np
    from qwdeploy.toolkit.metrics import agreement

    twin, options = CPU_TWIN[quant]
    reference, fed = greedy_logits(exported(arch, "cpu", twin, custom_ops="off", **options), steps=3)
    folder = exported(arch, "cuda", quant)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CUDAExecutionProvider"])
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    ours, _ = greedy_logits(folder, steps=3, forced=fed, session=session)
    result = agreement(reference, ours)
    assert result.top1 >= 0.9 and np.isfinite(ours).all(), result.summary()


def test_cuda_refuses_our_float32_kernels_in_its_fp16_graphs(exported):
    """Promise kept by refusal: our kernels take float32 (kernels/schemas.py), the cuda graphs are fp16."""
    backend = BACKENDS.get("cuda")
    with pytest.raises(QwdeployError, match="-O custom_ops=on: qwdeploy's kernels take float32 and the cuda"):
        backend.resolve_options({"custom_ops": "on"}, "int4")
    folder = exported("qwen3", "cuda", "int4", custom_ops="auto")
    custom = json.loads((folder / "qwdeploy_backend.json").read_text())["custom_ops"]
    assert (custom["requested"], custom["emitted"], custom["library"]) == ("auto", False, None)
    assert "fp16" in custom["why"]
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    assert not any(n.domain == "qwdeploy" for n in model.graph.node)
