"""The black-box suite every registered backend passes (the invariants in backends/base.py)."""

import dataclasses
import json
import subprocess
import sys

import pytest

from qwdeploy.backends import BACKENDS
from qwdeploy.backends.base import Plan, option_fields
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.devices import ARTIFACT_KINDS, DEVICES
from qwdeploy.toolkit.errors import QwdeployError
from qwdeploy.toolkit.profiler.collectors import COLLECTORS


@pytest.fixture(params=BACKENDS.names())
def backend(request):
    return BACKENDS.get(request.param)


def test_importing_qwdeploy_loads_no_backend():
    code = "import sys, qwdeploy.backends; print([m for m in sys.modules if m.startswith('qwdeploy.backends.')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_availability_is_a_reason_never_an_exception(backend):
    ok, reason = backend.availability()
    assert isinstance(ok, bool) and reason


def test_pipeline_is_named_phases_of_named_passes(backend, make_checkpoint):
    spec = open_checkpoint(make_checkpoint("qwen3")).spec
    for quant in backend.quants:
        plan = Plan(quant, backend.resolve_options({}, quant), spec)
        phases = backend.pipeline(plan)
        assert phases and all(isinstance(name, str) and isinstance(passes, list) for name, passes in phases)
        assert all(p.name for _, passes in phases for p in passes)
        assert [(n, [p.name for p in ps]) for n, ps in phases] == [(n, [p.name for p in ps])
                                                                  for n, ps in backend.pipeline(plan)]


def test_unknown_options_and_quants_are_refused(backend):
    with pytest.raises(QwdeployError, match="unknown option"):
        backend.resolve_options({"blocksize": "32"})
    with pytest.raises(QwdeployError, match="block_size"):
        backend.resolve_options({"block_size": "many"})
    with pytest.raises(QwdeployError, match="--quant"):
        backend.resolve_quant("q4_k_m", None)


def test_every_device_names_its_runtimes_and_they_load_only_when_asked(backend):
    device = DEVICES[backend.name]
    assert "onnx" in device.runtimes and set(device.runtimes) <= set(ARTIFACT_KINDS)
    code = (f"import sys; from qwdeploy.backends import BACKENDS; b = BACKENDS.get({backend.name!r}); "
            "print(sorted(m for m in sys.modules if m.endswith('.collector')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
    for kind in device.runtimes:
        assert COLLECTORS.get(f"{kind}/{backend.name}").unavailable_reason  # the profiler's interface


def test_options_are_a_typed_dataclass_every_field_a_cli_option(backend):
    defaults = backend.resolve_options({})
    assert dataclasses.is_dataclass(defaults) and defaults == backend.defaults
    table = option_fields(defaults)
    assert set(table) == {f.name for f in dataclasses.fields(defaults)}
    assert all(option.help for option, _ in table.values())


# What each device's build must show: the profile it needs, passes that must fire, the runtime files it adds.
BUILDS = {
    "cpu": (None, {"group_query_attention", "rms_norm", "matmul_nbits"}, {"genai_config.json"}),
    "cuda": (None, {"group_query_attention", "rms_norm", "matmul_nbits"}, {"genai_config.json"}),
    "cann": ("ascend-910b", {"static_kv"}, {"atc.sh", "provider_options.json"}),
}


def test_build_writes_a_checked_artifact_with_manifest(backend, exported):
    profile, passes, runtime_files = BUILDS[backend.name]
    folder = exported("qwen2", backend.name, backend.quants[-1], profile=profile)
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert manifest["backend"] == backend.name and manifest["quant"] == backend.quants[-1]
    assert manifest["graph_check"].startswith("onnx.checker, op schemas")
    assert {p["name"] for p in manifest["passes"]} >= passes
    # fold_weight_casts fires on half-precision checkpoints only, moe on sparse models only, float_head on a
    # tied head left float (here quantized), qk_norm_attention on Qwen3's q/k norms.
    quiet = ("fold_weight_casts", "moe", "float_head", "qk_norm_attention")
    assert all(p["count"] > 0 for p in manifest["passes"] if p["name"] not in quiet)
    for name in ("model.onnx", "model.onnx.data", "tokenizer.json", "checksums.sha256", *runtime_files):
        assert (folder / name).is_file()
    assert not list(folder.parent.glob(".*partial*"))
