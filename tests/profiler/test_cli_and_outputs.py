"""`qwdeploy profile` end to end: outputs on disk, --compare, sweeps and fit, and refused inputs."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.profiler.schema import validate

FAST = ["--prompt-len", "8", "--gen", "3", "--runs", "1"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pairs `--compare` must handle (the fused CPU graph against the portable one: test below).
COMPARE_PAIRS = [("onnx_f32", "onnx_f16")]


def invoke(*args: str):
    return CliRunner().invoke(cli, ["profile", *args], catch_exceptions=False)


def test_out_writes_json_trace_and_png_measured_in_a_fresh_process(artifacts, tmp_path):
    import matplotlib  # noqa: F401  (the dev install has it: missing fails)
    from matplotlib import image

    result = invoke(str(artifacts("onnx_f16")), *FAST, "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "launches / decode step" in result.output
    doc = json.loads((tmp_path / "out" / "profile.json").read_text())
    validate(doc)
    memory = doc["memory"]
    # A fresh child: it starts small, and its peak holds at least the weights a decode step reads.
    assert 0 < memory["host_baseline_bytes"] < memory["host_peak_bytes"] < 2 * 2**30
    assert memory["host_peak_bytes"] >= doc["artifact"]["weight_bytes_read_per_token"]
    png = (tmp_path / "out" / "profile.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    pixels = image.imread(tmp_path / "out" / "profile.png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    trace = json.loads((tmp_path / "out" / "trace.json").read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    kernels = [e for e in spans if e["name"] not in ("prefill", "decode")]
    assert len(kernels) == sum(doc["launches"]["per_step"])
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in spans)


@pytest.mark.parametrize("pair", COMPARE_PAIRS, ids="-vs-".join)
def test_compare_prints_every_figure_with_ratios_to_the_first(artifacts, pair, tmp_path):
    paths = [str(artifacts(name)) for name in pair]
    result = invoke("--compare", *paths, *FAST, "--in-process", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line for line in result.output.splitlines()}
    for figure in ("TTFT", "decode", "launches / decode step", "weights", "KV cache"):
        assert "x)" in lines[figure], lines[figure]
    assert "(0.50x)" in lines["weights"]  # f16 stores half the bytes of f32
    compare = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert compare["artifacts"] == paths
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"profile-1.json", "profile-2.json", "trace.json"}


def test_compare_portable_with_fused_cpu_graph_counts_fewer_launches(artifacts, tmp_path):
    """Tiny Qwen3, ONNX Runtime's own optimizations on for both: 121 kernels per decode step unfused,
    27 fused (2 layers of 8, plus embedding, attention lengths, final norm, logits_to_keep's Neg and Slice,
    LM head); deterministic, so exact."""
    paths = [str(artifacts(name)) for name in ("onnx_f32", "onnx_cpu_fused")]
    result = invoke("--compare", *paths, *FAST, "--in-process", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    launches = [json.loads((tmp_path / "out" / f"profile-{i}.json").read_text())["launches"]["per_decode_step"]
                for i in (1, 2)]
    assert launches == [121, 27]


def test_sweeps_give_points_fit_and_cost(artifacts, tmp_path):
    from qwdeploy.toolkit.profiles import load_profile

    result = invoke(str(artifacts("gguf_f16")), *FAST, "--in-process", "--batch", "1,2", "--context", "16,32",
                    "--profile", "rpi5", "--usd-per-hour", "0.5", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "profile.json").read_text())
    points = [(p["axis"], p["batch"], p["context"]) for p in doc["sweep"]]
    assert points == [("batch", 1, 10), ("batch", 2, 10), ("context", 1, 16), ("context", 1, 32)]
    assert all(p["fits"] and p["usd_per_million_tokens"] > 0 for p in doc["sweep"])
    budget = int(load_profile("rpi5").memory.budget_gib * 2**30)
    fit, per_token = doc["fit"], doc["artifact"]["kv_bytes_per_token"]
    assert fit["budget_bytes"] == budget
    assert fit["max_batch"] == (budget - doc["artifact"]["weight_bytes"]) // (per_token * 32)
    assert fit["max_context"] == min(doc["artifact"]["context_length"],
                                     (budget - doc["artifact"]["weight_bytes"]) // (per_token * 2))
    assert doc["cost"]["usd_per_hour"] == 0.5


def test_not_an_artifact_is_refused_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "notes.txt", tmp_path / "empty", tmp_path / "missing"):
        result = CliRunner().invoke(cli, ["profile", str(path)])
        assert result.exit_code == 1
        assert result.output.count("\n") == 1 and str(path) in result.output


def test_absent_cuda_device_is_named(artifacts):
    from qwdeploy.backends.cuda.collector import COLLECTOR

    if COLLECTOR.unavailable_reason() is None:
        pytest.skip("a CUDA device is present here")
    result = CliRunner().invoke(cli, ["profile", str(artifacts("onnx_f16")), "--device", "cuda"])
    assert result.exit_code == 1
    assert "CUDA device not present" in result.output
    assert "NVIDIA GPU" in result.output or "CUDAExecutionProvider" in result.output


def test_prompt_longer_than_the_context_is_refused(artifacts):
    result = CliRunner().invoke(cli, ["profile", str(artifacts("gguf_f16")), "--prompt-len", "5000", "--gen", "2",
                                      "--in-process"])
    assert result.exit_code == 1
    assert "the artifact's context is 4096" in result.output


def test_missing_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    from qwdeploy.toolkit.errors import MissingDependencyError
    from qwdeploy.toolkit.profiler.outputs.png import write_png

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(MissingDependencyError, match="qwdeploy\\[profile\\]"):
        write_png({}, tmp_path / "x.png")


def test_bandwidth_is_cached_until_it_is_too_old_to_trust(tmp_path, monkeypatch):
    from qwdeploy.toolkit.profiler import bandwidth

    monkeypatch.setattr(bandwidth, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(bandwidth, "MAX_AGE_S", 600.0)
    monkeypatch.setattr(bandwidth, "ARRAY_BYTES", 8 * 2**20)
    first = bandwidth.host_bandwidth()
    assert first > 0 and (tmp_path / bandwidth.CACHE_FILE).is_file()
    monkeypatch.setattr(bandwidth, "measure_bandwidth", lambda: pytest.fail("measured twice"))
    assert bandwidth.host_bandwidth() == first
    now = time.time()
    monkeypatch.setattr(bandwidth.time, "time", lambda: now + 601.0)  # ten minutes on: measured again
    monkeypatch.setattr(bandwidth, "measure_bandwidth", lambda: 2 * first)
    assert bandwidth.host_bandwidth() == 2 * first
    # A cache written before entries carried their time is measured again too.
    key = bandwidth._host_key()
    (tmp_path / bandwidth.CACHE_FILE).write_text(json.dumps({key: first}))
    assert bandwidth.host_bandwidth() == 2 * first
    assert json.loads((tmp_path / bandwidth.CACHE_FILE).read_text())[key]["bytes_per_s"] == 2 * first


def test_each_device_is_held_to_its_own_memory(tmp_path, monkeypatch):
    """cpu: host memory; cuda: the GPU's own memory, measured on it (never the host's); cann: no measure, no
    roofline."""
    import onnxruntime as ort

    from qwdeploy.toolkit.profiler import bandwidth

    monkeypatch.setattr(bandwidth, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(bandwidth, "ARRAY_BYTES", 8 * 2**20)
    assert bandwidth.device_bandwidth("cpu") == bandwidth.host_bandwidth() > 0
    assert bandwidth.device_bandwidth("cann") is None
    gpu = bandwidth.device_bandwidth("cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        # A GPU reads its own memory faster than the host's cores read DRAM (H200: 2.3 TiB/s through ONNX
        # Runtime against 60 GiB/s): the host's figure here would mean the GPU was not measured.
        assert gpu is not None and gpu > bandwidth.host_bandwidth()
    else:
        assert gpu is None
