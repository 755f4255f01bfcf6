"""The MoE fusion on the tiny Qwen2-MoE (shared expert, no renormalisation) and Qwen3-MoE (renormalised) fixtures.

Numbers need the kernel library (qwdeploy kernels build); without it only structure is checked.
Measured: fused fp32 vs the unfused exporter graph, prefill + 4 decode steps (11 positions), max |diff|
qwen2moe 8.6e-6, qwen3moe 9.8e-6 (the kernel sums the same products in another order).
int4 QMoE graph (embedding table quantized too) vs the unfused fp32 graph: top-1 81.8% / KL 0.196
(qwen2moe), 18.2% / 0.726 (qwen3moe); held, like the other int4 graphs, to be at least as good as the plain
round-to-nearest reference (backend_helpers.py: 54.5% / 0.276 and 9.1% / 1.25).
"""

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qwdeploy.backends.ort.fusions import moe
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.metrics import agreement

from backend_helpers import assert_int4_at_least_plain_rtn, fuse, greedy_logits, ops, plain_rtn  # noqa: F401

SPARSE_LAYERS = {"qwen2moe": 2, "qwen3moe": 3}
ATOL = 5e-5


def _library_session(folder, library):
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("quant, op", [("fp32", "MoE"), ("int4", "QMoE")])
@pytest.mark.parametrize("arch", SPARSE_LAYERS)
def test_one_moe_node_per_sparse_layer(exported, arch, quant, op):
    folder = exported(arch, "cpu", quant, custom_ops="on")
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert {p["name"]: p["count"] for p in manifest["passes"]}["moe"] == SPARSE_LAYERS[arch]
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    fused = [n for n in graph.node if n.op_type == op and n.domain == "qwdeploy"]
    assert sorted(n.name for n in fused) == [f"/layers.{i}/moe/{op}" for i in range(SPARSE_LAYERS[arch])]
    assert not {"NonZero", "ScatterND", "TopK"} & {n.op_type for n in graph.node}
    shared = len(fused[0].input) == 7 + (op == "QMoE") * 2  # shared gate_up, down and gate given
    assert shared == (arch == "qwen2moe")


@pytest.mark.parametrize("arch", SPARSE_LAYERS)
def test_fused_moe_matches_the_unfused_graph(exported, arch, kernel_library):
    reference, fed = greedy_logits(exported(arch, "cpu", "fp32"), steps=4)  # custom ops off: exporter's MoE
    folder = exported(arch, "cpu", "fp32", custom_ops="on")
    ours, _ = greedy_logits(folder, steps=4, forced=fed, session=_library_session(folder, kernel_library))
    np.testing.assert_allclose(ours, reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", SPARSE_LAYERS)
def test_int4_qmoe_agreement_with_fp32_is_bounded(exported, plain_rtn, arch, kernel_library):
    reference, fed, plain = plain_rtn(arch)
    folder = exported(arch, "cpu", "int4", custom_ops="on")
    quantized, _ = greedy_logits(folder, steps=4, forced=fed, session=_library_session(folder, kernel_library))
    assert_int4_at_least_plain_rtn(agreement(reference, quantized), agreement(reference, plain))


def test_rejects_routing_that_disagrees_with_the_spec(make_checkpoint, exported):
    """Qwen3-MoE renormalises its top-k weights; a spec that says it must not is refused with the reason."""
    spec = open_checkpoint(make_checkpoint("qwen3moe")).spec
    portable = onnx.load(str(exported("qwen3moe") / "model.onnx"))
    fused, (report,) = fuse(portable, moe, moe=spec.moe)
    assert report.count == SPARSE_LAYERS["qwen3moe"]
    wrong = dataclasses.replace(spec.moe, norm_topk_prob=False)
    unfused, (report,) = fuse(portable, moe, moe=wrong)
    assert report.count == 0 and "TopK" in ops(unfused)
    assert len(report.rejections) == SPARSE_LAYERS["qwen3moe"]
    assert all("the model spec says (8, 2, False)" in why for _, why in report.rejections), report.rejections


def test_custom_ops_off_keeps_the_exporters_moe(exported):
    folder = exported("qwen3moe", "cpu", "fp32", custom_ops="off")
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert "moe" not in {p["name"] for p in manifest["passes"]}
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    assert {"TopK", "NonZero", "ScatterND"} <= {n.op_type for n in graph.node}
