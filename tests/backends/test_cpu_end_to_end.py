"""The cpu backend end to end on the tiny checkpoints of all four architectures.

Tolerances: fused fp32 vs transformers fp32 differs only by summation order (measured ~1e-5).
int8/int4 are judged against the fused fp32 graph on the same ids (prompt + greedy continuation):
measured over 11 positions with the embedding table quantized too (the default), int8 top-1 91-100% and
KL 2-9e-3 (near-tied logits flip); int4 top-1 18-73% and KL 0.21-0.74, Qwen3-MoE worst (with
-O keep=embed: 45-73%, KL 0.17-0.52). Hidden size 64 with random weights is the hardest case for
4 bits; real checkpoints do far better.
"""

import json

import numpy as np
import pytest

from qwdeploy.toolkit.metrics import agreement

from backend_helpers import PROMPT, greedy_logits

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
BOUNDS = {"int8": (0.75, 0.02), "int4": (0.15, 0.9)}  # (min top-1, max mean KL) vs fused fp32


def test_fused_fp32_matches_transformers(tiny, exported, arch):
    ours, fed = greedy_logits(exported(arch, "cpu", "fp32"), steps=4)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = model(torch.tensor([PROMPT + fed])).logits[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_agreement_with_fp32_is_bounded(exported, arch, quant):
    reference, fed = greedy_logits(exported(arch, "cpu", "fp32"), steps=4)
    quantized, _ = greedy_logits(exported(arch, "cpu", quant), steps=4, forced=fed)
    result = agreement(reference, quantized)
    min_top1, max_kl = BOUNDS[quant]
    assert result.top1 >= min_top1 and result.kl_mean <= max_kl, result.summary()


def test_scale_search_agrees_with_fp32_more_closely_than_rtn(exported):
    """Same sizes (same bits and blocks), mean KL over the four architectures at int4, accuracy_level 0.
    Measured: rtn 0.235, search 0.212 (qwen3 0.279 → 0.255, qwen2-MoE 0.267 → 0.203, qwen2 equal)."""
    kl = {}
    for method in ("rtn", "search"):
        values = []
        for arch in ("qwen2", "qwen3", "qwen2moe", "qwen3moe"):
            reference, fed = greedy_logits(exported(arch, "cpu", "fp32"), steps=4)
            quantized, _ = greedy_logits(exported(arch, "cpu", "int4", method=method, accuracy_level="0"),
                                         steps=4, forced=fed)
            values.append(agreement(reference, quantized).kl_mean)
        kl[method] = float(np.mean(values))
    assert kl["search"] < kl["rtn"], kl


# Nodes per decoder layer, exact (the graph is deterministic), by our-ops setting: off, on (custom_ops=on,
# which fuses int4/int8 gate/up + SwiGLU into QuantSwiGLU) and mnb (custom_ops=on, quant_swiglu=off:
# MatMulNBits + SwiGLU). With our ops Qwen3's q/k norm and rotary are one QKNormRotaryPacked between the
# packed QKV projection and GroupQueryAttention; Qwen2's q/k/v bias is one Add in fp32 and folds into
# MatMulNBits in int4.
# With ONNX Runtime's ops alone Qwen3 keeps its q/k norm chains on CPU because GroupQueryAttention's CPU
# kernel has no q/k-norm inputs (CUDA: 8, see test_cuda_backend.py).
NODES_PER_LAYER = {
    ("qwen2", "fp32", "off"): 11, ("qwen2", "int4", "off"): 10, ("qwen2", "fp32", "on"): 9, ("qwen2", "int4", "on"): 7,
    ("qwen2", "int4", "mnb"): 8,
    ("qwen3", "fp32", "off"): 18, ("qwen3", "int4", "off"): 18, ("qwen3", "fp32", "on"): 9, ("qwen3", "int4", "on"): 8,
    ("qwen3", "int4", "mnb"): 9,
}
OUR_OPS = {"off": {"custom_ops": "off"}, "on": {"custom_ops": "on"}, "mnb": {"custom_ops": "on", "quant_swiglu": "off"}}


@pytest.mark.parametrize("key", NODES_PER_LAYER, ids="-".join)
def test_nodes_per_layer(exported, key):
    arch, quant, ours = key
    manifest = json.loads((exported(arch, "cpu", quant, **OUR_OPS[ours]) / "qwdeploy_backend.json").read_text())
    assert set(manifest["nodes_per_layer"].values()) == {NODES_PER_LAYER[key]}
    if ours == "on" and quant == "int4":
        assert NODES_PER_LAYER[key] <= 8  # the issue's bound for dense Qwen2 and Qwen3 on CPU


def test_quant_swiglu_by_default_and_off_on_request(exported):
    """CPU default with our ops: one QuantSwiGLU; -O quant_swiglu=off keeps MatMulNBits (packed gate/up) + SwiGLU."""
    import onnx

    def op_types(**options):
        folder = exported("qwen2", "cpu", "int4", custom_ops="on", **options)
        return [n.op_type for n in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node]

    assert op_types().count("QuantSwiGLU") == 2 and "SwiGLU" not in op_types()
    assert "QuantSwiGLU" not in op_types(quant_swiglu="off") and "SwiGLU" in op_types(quant_swiglu="off")


@pytest.mark.parametrize("arch_quant", [("qwen2", "fp32"), ("qwen3", "fp32"), ("qwen3", "int4")], ids="-".join)
def test_custom_op_graph_records_its_library_and_matches(exported, arch_quant, kernel_library):
    arch, quant = arch_quant
    folder = exported(arch, "cpu", quant, custom_ops="on")
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert manifest["custom_ops"]["domain"] == "qwdeploy"
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library))
    reference, fed = greedy_logits(exported(arch, "cpu", quant), steps=3)
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ours, _ = greedy_logits(folder, steps=3, forced=fed, session=session)
    # fp32: same math in another order; int4: MatMulNBits quantizes activations (accuracy_level 4), ours not.
    tolerance = 1e-4 if quant == "fp32" else 1.0
    assert np.abs(ours - reference).max() < tolerance


def test_onnxruntime_genai_runs_the_cpu_folder(make_checkpoint, exported):
    og = pytest.importorskip("onnxruntime_genai")
    folder = exported("qwen2", "cpu", "int4")
    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(PROMPT) + 6, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(PROMPT)
    while not generator.is_done():
        generator.generate_next_token()
    ours = [int(t) for t in generator.get_sequence(0)]
    _, fed = greedy_logits(folder, steps=6)
    assert ours == PROMPT + fed


def test_passes_fire_on_optimums_graph(make_checkpoint, exported, tmp_path):
    pytest.importorskip("optimum.exporters.onnx", reason="optimum is an optional extra (qwdeploy[optimum])")
    import onnx

    from qwdeploy.backends.graph import Graph
    from qwdeploy.backends.ort.artifact import save_model
    from qwdeploy.backends.ort.fusions import rms_norm, skip_rms_norm
    from qwdeploy.backends.ort.quant.config import QuantConfig
    from qwdeploy.backends.ort.quant.matmul_nbits import quantize_matmuls
    from qwdeploy.backends.passes import Context, Fusion, GraphPass, run_phases
    from qwdeploy.exporters.onnx.exporter import export
    from qwdeploy.exporters.request import ExportRequest
    from qwdeploy.toolkit.checkpoint import open_checkpoint

    traced = tmp_path / "optimum"
    export(ExportRequest(open_checkpoint(make_checkpoint("qwen2")), traced, via="optimum", show_progress=False))
    ctx = Context(options={"quant": QuantConfig(bits=8), "num_layers": 2})
    counts = {}
    for name, passes in (("norms", [Fusion(rms_norm), Fusion(skip_rms_norm)]),
                         ("quant", [GraphPass("matmul_nbits", quantize_matmuls)])):
        source = traced if name == "norms" else tmp_path / "norms"
        graph = Graph(onnx.load(str(source / "model.onnx"), load_external_data=False), source)
        counts.update({r.name: r.count for _, r in run_phases(graph, [(name, passes)], ctx)})
        (tmp_path / name).mkdir()
        save_model(graph.model, tmp_path / name, source)
    assert counts == {"rms_norm": 5, "skip_rms_norm": 4, "matmul_nbits": counts["matmul_nbits"]}
    assert counts["matmul_nbits"] >= 14  # q, k, v, o, gate, up, down per layer (+ the LM head)
    reference, fed = greedy_logits(traced, steps=3)
    fused, _ = greedy_logits(tmp_path / "norms", steps=3, forced=fed)
    np.testing.assert_allclose(fused, reference, atol=ATOL, rtol=0)
    quantized, _ = greedy_logits(tmp_path / "quant", steps=3, forced=fed)
    assert agreement(reference, quantized).top1 >= BOUNDS["int8"][0]
