"""Every artifact kind profiles into one schema; launches per decode step are the graph's kernel count."""

from __future__ import annotations

import collections
import json
import re

import numpy as np
import pytest

from qwdeploy.toolkit.profiler.api import profile
from qwdeploy.toolkit.profiler.schema import profile_schema, schema_errors, validate
from qwdeploy.toolkit.profiler.runner import Settings
from qwdeploy.toolkit.spec import load_config, spec_from_config

# Small enough for 2 shared cores; nothing here is a speed measurement.
SMALL = Settings(prompt_len=8, gen=4, runs=1, instrument_steps=2)

KINDS = {"onnx_f32": "onnx", "gguf_f16": "gguf", "hf": "hf"}


def _profile(path, **kwargs):
    docs, measurements = profile([path], settings=kwargs.pop("settings", SMALL), isolate=False, progress=False,
                                 **kwargs)
    return docs[0], measurements[0]


@pytest.fixture(scope="module")
def profiled(artifacts):
    """name → (document, measurement), profiled once per module."""
    done = {}

    def get(name: str):
        if name not in done:
            done[name] = _profile(artifacts(name))
        return done[name]

    return get


@pytest.fixture
def layers(checkpoint) -> int:
    return spec_from_config(load_config(checkpoint / "config.json")).num_layers


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_profiles_into_a_valid_document(profiled, name):
    doc, _ = profiled(name)
    validate(doc)
    assert doc["artifact"]["kind"] == KINDS[name]
    assert len(doc["runs"]) == SMALL.runs
    assert len(doc["runs"][0]["decode_step_s"]) == SMALL.gen - 1
    assert doc["launches"]["per_step"] == [doc["launches"]["per_decode_step"]] * SMALL.instrument_steps
    assert doc["ops"] and abs(sum(r["share"] for r in doc["ops"]) - 1) < 1e-6
    assert sum(r["count"] for r in doc["ops"]) == sum(doc["launches"]["per_step"])
    assert doc["roofline"]["share"] > 0
    memory = doc["memory"]
    # Peak RSS: positive, covers what the process held once loaded, far below anything a tiny model needs.
    assert memory["host_loaded_bytes"] <= memory["host_load_peak_bytes"] <= memory["host_peak_bytes"] < 8 * 2**30
    assert all(0 < r["host_peak_bytes"] <= memory["host_peak_bytes"] for r in doc["runs"])
    assert memory["kv_cache_bytes"] == doc["artifact"]["kv_bytes_per_token"] * (SMALL.prompt_len + SMALL.gen - 1)


def test_the_schema_file_is_itself_valid_and_our_validator_agrees_with_jsonschema(profiled):
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(profile_schema())
    doc, _ = profiled("onnx_f32")
    assert schema_errors(doc, profile_schema()) == []
    broken = json.loads(json.dumps(doc))
    broken["launches"]["per_decode_step"] = -1
    del broken["memory"]["weight_bytes"]
    assert len(schema_errors(broken, profile_schema())) == 2
    assert not jsonschema.Draft202012Validator(profile_schema()).is_valid(broken)


def _ort_nodes(folder, level, tmp_path) -> int:
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return len(onnx.load(str(tmp_path / "optimized.onnx"), load_external_data=False).graph.node)


def test_onnx_launches_equal_the_nodes_onnxruntime_executes(artifacts, profiled, tmp_path):
    import onnx
    import onnxruntime as ort

    folder = artifacts("onnx_f32")
    fused = profiled("onnx_f32")[0]["launches"]["per_decode_step"]
    unfused = _profile(folder, options={"graph_optimization": "disabled"})[0]["launches"]["per_decode_step"]
    # Every node of the graph ONNX Runtime runs executes once per step (no control flow in the decoder).
    assert fused == _ort_nodes(folder, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, tmp_path)
    assert unfused == len(onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node)
    assert fused < unfused


def test_matmuls_per_step_are_seven_per_layer_plus_the_lm_head(profiled, layers):
    """q, k, v, o, gate, up, down per layer and the LM head, whatever the runtime calls a matmul."""
    expected = 7 * layers + 1
    ops = {name: {r["op"]: r["count_per_step"] for r in profiled(name)[0]["ops"]} for name in KINDS}
    assert ops["gguf_f16"]["MUL_MAT"] == expected
    assert ops["hf"]["aten::mm"] == expected
    # ONNX Runtime fuses attention's two matmuls per layer into FusedMatMul, keeping the projections as MatMul.
    assert ops["onnx_f32"]["MatMul"] + ops["onnx_f32"]["FusedMatMul"] == expected + 2 * layers


def test_gguf_launches_follow_llama_cpps_qwen3_graph(profiled, layers):
    """Per layer: 2 norms + q/k norms (RMS_NORM, MUL each: 8), 7 MUL_MAT, 2 ROPE, 2 SET_ROWS (KV write),
    FLASH_ATTN_EXT, SWIGLU, 2 residual ADD = 23; plus token GET_ROWS, the last layer's two output-row
    GET_ROWS, and the final RMS_NORM, MUL and LM-head MUL_MAT = 6."""
    doc, measurement = profiled("gguf_f16")
    assert doc["launches"]["per_decode_step"] == 23 * layers + 6
    names = {e.name for e in measurement.report.events}
    assert "result_output" in names  # ggml tensor names read at the struct offset we rely on


def test_hf_launches_are_the_same_every_step(profiled):
    doc, measurement = profiled("hf")
    per_step = collections.Counter(e.step for e in measurement.report.events)
    assert set(per_step.values()) == {doc["launches"]["per_decode_step"]}


def test_batched_run_reports_batch_throughput(artifacts):
    settings = Settings(prompt_len=8, gen=3, runs=1, batch=3, instrument_steps=1)
    for name in ("onnx_f32", "gguf_f16"):
        doc, _ = _profile(artifacts(name), settings=settings)
        run = doc["runs"][0]
        assert run["batch"] == 3
        np.testing.assert_allclose(run["decode_tokens_per_s"], 3 * 2 / sum(run["decode_step_s"]))
        assert doc["memory"]["kv_cache_bytes"] == 3 * 10 * doc["artifact"]["kv_bytes_per_token"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["custom_ops"].update(library="missing.so"), "names kernel library 'missing.so', which is not in"),
    (lambda m: m["custom_ops"].update(library="/usr/lib/libqwdeploy_kernels.so"), "must be a file name inside"),
    (lambda m: m["custom_ops"].update(library="../libqwdeploy_kernels.so"), "must be a file name inside"),
    (lambda m: m.update(library="libqwdeploy_kernels.so"), "unknown key 'library' in BackendManifest"),
    (lambda m: m["custom_ops"].pop("target"), "missing key 'target' in CustomOpsRecord"),
    (lambda m: m.update(custom_ops=["a.so"]), "'custom_ops' must be an object"),
])
def test_the_backend_manifest_is_read_exactly(artifacts, tmp_path, change, message):
    import shutil

    from qwdeploy.toolkit.errors import QwdeployError
    from qwdeploy.toolkit.runtimes.ort.facts import custom_op_libraries, read_graph

    copy = tmp_path / "copy"
    shutil.copytree(artifacts("onnx_cpu_fused"), copy)
    manifest = json.loads((copy / "qwdeploy_backend.json").read_text())
    change(manifest)
    (copy / "qwdeploy_backend.json").write_text(json.dumps(manifest))
    with pytest.raises(QwdeployError, match=re.escape(message)):
        custom_op_libraries(copy, read_graph(copy))


def test_a_portable_folder_needs_no_library_and_our_ops_need_one(artifacts):
    import dataclasses

    from qwdeploy.toolkit.errors import QwdeployError
    from qwdeploy.toolkit.runtimes.ort.facts import custom_op_libraries, read_graph

    folder = artifacts("onnx_f16")
    facts = read_graph(folder)
    assert custom_op_libraries(folder, facts) == []  # no manifest, standard ops only: nothing to register
    with pytest.raises(QwdeployError, match="domain qwdeploy but no qwdeploy_backend.json names"):
        custom_op_libraries(folder, dataclasses.replace(facts, custom_domains=("qwdeploy",)))


def test_cpu_backend_folder_registers_the_library_it_carries(artifacts):
    from qwdeploy.toolkit.runtimes.ort.facts import custom_op_libraries, read_graph

    folder = artifacts("onnx_cpu_fused")
    facts = read_graph(folder)
    assert facts.custom_domains == ("qwdeploy",)
    assert custom_op_libraries(folder, facts) == [(folder / "libqwdeploy_kernels.so").resolve()]
    doc, _ = _profile(folder)
    validate(doc)
    assert doc["launches"]["per_decode_step"] > 0
