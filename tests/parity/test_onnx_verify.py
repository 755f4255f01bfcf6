"""`export --format onnx --verify`: the folder runs in ONNX Runtime and agrees with transformers before it is
written; one that does not fails the export in one line and leaves nothing at the output path."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from qwdeploy.backends.ort import backend as ort_backend
from qwdeploy.exporters.onnx import exporter
from qwdeploy.exporters.onnx.verify import verify_folder
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.layout import DATA_FILE, MODEL_FILE

# fp32 graph vs fp32 transformers: summation order only (tests/parity/test_onnx_parity.py, measured ~1e-5).
FP32_ATOL = 1e-4
DAMAGED = "model.layers.0.mlp.down_proj.weight"


def _export(checkpoint: Path, out: Path, *flags: str):
    return CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "onnx", "-o", str(out), *flags])


def _row(result, label: str) -> str | None:
    """The value of the summary row `label`, or None."""
    return next((line[len(label):].strip() for line in result.stdout.splitlines()
                 if line.startswith(label + " ")), None)


def _max_abs(row: str) -> float:
    return float(re.search(r"max \|Δlogit\| (\S+) vs transformers$", row).group(1))


def test_an_fp32_folder_agrees_with_transformers(tiny, tmp_path):
    result = _export(tiny, tmp_path / "onnx", "--verify")
    assert result.exit_code == 0, result.output
    row = _row(result, "verify")
    assert row is not None and row.startswith("top-1 100.0% over 20 positions"), result.output
    assert _max_abs(row) < FP32_ATOL
    assert (tmp_path / "onnx" / MODEL_FILE).is_file()


def test_an_optimum_folder_is_verified_too(make_checkpoint, tmp_path):
    import optimum.exporters.onnx  # noqa: F401  (the dev install has it: missing fails)

    result = _export(make_checkpoint("qwen2"), tmp_path / "onnx", "--via", "optimum", "--verify")
    assert result.exit_code == 0, result.output
    row = _row(result, "verify")
    assert row is not None and row.startswith("top-1 100.0%") and _max_abs(row) < FP32_ATOL, result.output


# qwen3moe is int4's worst case on these weights (mean KL 1.2, see exporters/onnx/verify.py).
@pytest.mark.parametrize("arch", ["qwen2", "qwen3moe"])
def test_an_int4_cpu_folder_passes(make_checkpoint, tmp_path, arch):
    result = _export(make_checkpoint(arch), tmp_path / "onnx", "--target", "cpu", "--quant", "int4", "--verify")
    assert result.exit_code == 0, result.output
    assert (_row(result, "verify") or "").endswith("vs transformers"), result.output


def _zero_after_writing(monkeypatch, name: str, built: bool) -> None:
    """The folder as written (the portable graph's, or with `built` the backend's, whose portable graph only
    references the checkpoint), then `name`'s bytes in its data file zeroed: a graph that loads and runs but
    computes another model."""
    module, function = (ort_backend, "save_model") if built else (exporter, "write_onnx")
    real = getattr(module, function)

    def write_then_damage(*args):
        written = real(*args)
        path = args[1] / MODEL_FILE if built else args[3]  # save_model(model, folder, ...), write_onnx(.., path, ..)
        tensor = next(t for t in onnx.load(str(path), load_external_data=False).graph.initializer if t.name == name)
        where = {e.key: int(e.value) for e in tensor.external_data if e.key in ("offset", "length")}
        with open(path.parent / DATA_FILE, "r+b") as data:
            data.seek(where["offset"])
            data.write(bytes(where["length"]))
        return written

    monkeypatch.setattr(module, function, write_then_damage)


@pytest.mark.parametrize("target", [[], ["--target", "cpu"]], ids=["portable", "cpu"])
def test_a_damaged_folder_fails_in_one_line_and_is_not_written(make_checkpoint, tmp_path, monkeypatch, target):
    _zero_after_writing(monkeypatch, DAMAGED, built=bool(target))
    out = tmp_path / "onnx"
    result = _export(make_checkpoint("qwen3"), out, *target, "--verify")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "f32 logits disagree with transformers" in lines[0], result.stderr
    assert "nothing was written" in lines[0] and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no folder, no hidden partial or scratch


def test_a_damaged_folder_leaves_the_one_it_would_replace(make_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "onnx"
    assert _export(make_checkpoint("qwen3"), out, "--no-verify").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _zero_after_writing(monkeypatch, DAMAGED, built=False)
    assert _export(make_checkpoint("qwen3"), out, "--force", "--verify").exit_code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["onnx"]


@pytest.mark.parametrize(("flags", "limit", "runs"), [
    ([], None, True),  # on by default for small models
    ([], 0, False),  # off by default above VERIFY_MAX_PARAMETERS
    (["--no-verify"], None, False),
    (["--verify"], 0, True),
])
def test_when_verification_runs(make_checkpoint, tmp_path, monkeypatch, flags, limit, runs):
    monkeypatch.setattr(exporter, "verify_folder", lambda *args: "ran")
    if limit is not None:
        monkeypatch.setattr(exporter, "VERIFY_MAX_PARAMETERS", limit)
    result = _export(make_checkpoint("qwen2"), tmp_path / "onnx", *flags)
    assert result.exit_code == 0, result.output
    assert (_row(result, "verify") == "ran") == runs, result.output


def test_a_cuda_folder_is_verified_only_where_cuda_runs(make_checkpoint, tmp_path):
    result = _export(make_checkpoint("qwen2"), tmp_path / "onnx", "--target", "cuda", "--quant", "int4", "--verify")
    assert result.exit_code == 0, result.output
    row = _row(result, "verify")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert row.endswith("vs transformers"), result.output
    else:
        assert row == "skipped (no CUDA here)", result.output


def test_our_ops_without_a_kernel_library_are_skipped(make_checkpoint, tmp_path):
    out = tmp_path / "onnx"
    assert _export(make_checkpoint("qwen2"), out, "--no-verify").exit_code == 0
    model = onnx.load(str(out / MODEL_FILE), load_external_data=False)
    model.graph.node[0].domain = "qwdeploy"  # as a backend's fused op would be, with no manifest naming a library
    onnx.save_model(model, str(out / MODEL_FILE))
    row = verify_folder(out, make_checkpoint("qwen2"), "f32", "CPUExecutionProvider", out)
    assert row == "skipped (the graph has qwdeploy ops and no kernel library for them)"
