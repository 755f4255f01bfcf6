"""The black-box suite every registered backend passes (the invariants in backends/base.py)."""

import json
import subprocess
import sys

import pytest

from qwdeploy.backends import BACKENDS
from qwdeploy.toolkit.errors import QwdeployError


@pytest.fixture(params=BACKENDS.names())
def backend(request):
    return BACKENDS.get(request.param)


def test_importing_qwdeploy_loads_no_backend():
    code = "import sys, qwdeploy.backends; print([m for m in sys.modules if m.startswith('qwdeploy.backends.')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_availability_is_a_reason_never_an_exception(backend):
    ok, reason = backend.availability()
    assert isinstance(ok, bool) and reason


def test_pipeline_is_named_phases_of_named_passes(backend):
    for quant in backend.quants:
        phases = backend.pipeline(None, {**backend.resolve_options({}), "quant": quant})
        assert phases and all(isinstance(name, str) and isinstance(passes, list) for name, passes in phases)
        assert all(p.name for _, passes in phases for p in passes)
        assert [n for n, _ in phases] == [n for n, _ in backend.pipeline(None, {**backend.resolve_options({}),
                                                                                "quant": quant})]


def test_unknown_options_and_quants_are_refused(backend):
    with pytest.raises(QwdeployError, match="unknown option"):
        backend.resolve_options({"blocksize": "32"})
    with pytest.raises(QwdeployError, match="block_size"):
        backend.resolve_options({"block_size": "many"})
    with pytest.raises(QwdeployError, match="--quant"):
        backend.resolve_quant("q4_k_m", None)


def test_collector_is_imported_only_when_asked(backend):
    module = f"qwdeploy.backends.{backend.name}.collector"
    code = (f"import sys; from qwdeploy.backends import BACKENDS; b = BACKENDS.get({backend.name!r}); "
            f"print({module!r} in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    collector = backend.collector()
    assert collector is not None


def test_build_writes_a_checked_artifact_with_manifest(backend, exported):
    folder = exported("qwen2", backend.name, backend.quants[-1])
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert manifest["backend"] == backend.name and manifest["quant"] == backend.quants[-1]
    assert manifest["graph_check"].startswith("onnx.checker, op schemas")
    assert {p["pass"] for p in manifest["passes"]} >= {"group_query_attention", "rms_norm", "matmul_nbits"}
    assert all(p["count"] > 0 for p in manifest["passes"] if p["pass"] != "fold_weight_casts")
    for name in ("model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json"):
        assert (folder / name).is_file()
    assert not list(folder.parent.glob(".*partial*"))
