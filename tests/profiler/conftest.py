"""Tiny artifacts of one Qwen3 checkpoint in every kind the profiler measures, built once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from qwdeploy.toolkit.checkpoint import open_checkpoint

ARCH = "qwen3"
FAKE_BANDWIDTH = 10e9  # bytes/s: tests read the cache instead of streaming 512 MiB
# Backend artifacts: name → (target, quant, backend options); they need the qwdeploy kernel library.
BACKEND_ARTIFACTS = {"onnx_cpu_fused": ("cpu", "fp32", {"custom_ops": "on"})}


@pytest.fixture(scope="session", autouse=True)
def profiler_cache(tmp_path_factory: pytest.TempPathFactory):
    from qwdeploy.toolkit.profiler.bandwidth import CACHE_FILE, _host_key

    cache = tmp_path_factory.mktemp("qwdeploy-cache")
    (cache / CACHE_FILE).write_text(json.dumps({_host_key(): FAKE_BANDWIDTH}))
    previous = os.environ.get("QWDEPLOY_CACHE")
    os.environ["QWDEPLOY_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("QWDEPLOY_CACHE", None)
    else:
        os.environ["QWDEPLOY_CACHE"] = previous


@pytest.fixture(scope="session")
def checkpoint(make_checkpoint) -> Path:
    return make_checkpoint(ARCH)


@pytest.fixture(scope="session")
def artifacts(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, kernel_library: Path):
    """artifacts(name) → path; names: hf, onnx_f32, onnx_f16, gguf_f16 and BACKEND_ARTIFACTS' (each exported
    on first use)."""
    from qwdeploy.exporters.request import ExportRequest

    root, built = tmp_path_factory.mktemp("artifacts"), {"hf": checkpoint}

    def get(name: str) -> Path:
        if name in BACKEND_ARTIFACTS and name not in built:
            built[name] = _backend_artifact(checkpoint, root / name, *BACKEND_ARTIFACTS[name])
        if name not in built:
            fmt, quant = name.split("_")
            if fmt == "onnx":
                import onnxruntime  # noqa: F401  (the dev install has it: missing fails)
                from qwdeploy.exporters.onnx.exporter import export
            else:
                import llama_cpp  # noqa: F401  (the dev install has it: missing fails)
                from qwdeploy.exporters.gguf.exporter import export
            out = root / (name + (".gguf" if fmt == "gguf" else ""))
            export(ExportRequest(open_checkpoint(checkpoint), out, quant=quant, show_progress=False, verify=False))
            built[name] = out
        return built[name]

    return get


def _backend_artifact(checkpoint: Path, out: Path, target: str, quant: str, options: dict) -> Path:
    import onnxruntime  # noqa: F401  (the dev install has it: missing fails)
    from qwdeploy.exporters.onnx.exporter import export
    from qwdeploy.exporters.request import ExportRequest

    export(ExportRequest(open_checkpoint(checkpoint), out, quant=quant, target=target, show_progress=False,
                         options=options))
    return out
