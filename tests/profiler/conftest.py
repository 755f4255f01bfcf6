"""Tiny artifacts of one Qwen3 checkpoint in every kind the profiler measures, built once per session."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from qwdeploy.toolkit.checkpoint import open_checkpoint

ARCH = "qwen3"
FAKE_BANDWIDTH = 10e9  # bytes/s: tests read the cache instead of streaming 512 MiB
# Backend artifacts: name → (target, quant, backend options); they need the qwdeploy kernel library.
BACKEND_ARTIFACTS = {"onnx_cpu_fused": ("cpu", "fp32", {"custom_ops": "on"})}


@pytest.fixture(scope="module", autouse=True)
def profiler_cache(tmp_path_factory: pytest.TempPathFactory):
    """The measured bandwidth comes from a temporary cache; built kernels stay in the shared one. Per module,
    so the patch ends with the profiler's tests and never reaches other tests run later by the same worker."""
    from qwdeploy.toolkit.profiler import bandwidth

    cache = tmp_path_factory.mktemp("qwdeploy-cache")
    entry = {"bytes_per_s": FAKE_BANDWIDTH, "measured": time.time()}
    (cache / bandwidth.CACHE_FILE).write_text(json.dumps({bandwidth._host_key(): entry}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bandwidth, "cache_root", lambda: cache)
        patch.setattr(bandwidth, "MAX_AGE_S", math.inf)  # a long session must not re-measure for real
        yield cache


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

    export(ExportRequest(open_checkpoint(checkpoint), out, quant=quant, target=target, show_progress=False, verify=False,
                         options=options))
    return out
