"""A NaN or Inf weight, or one that overflows the export type, is refused by name; nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.safetensors_io import SafetensorsFile, TensorPlan, write_safetensors

TARGET = "model.layers.1.mlp.down_proj.weight"


def _poison(folder: Path, value: float, row: int, col: int) -> None:
    """Rewrite the checkpoint with one value of TARGET replaced (stored as float32)."""
    path = folder / "model.safetensors"
    st = SafetensorsFile(path)
    arrays = {name: np.array(st.tensor(name)) for name in st.headers}
    st.close()
    poisoned = arrays[TARGET].astype(np.float32)
    poisoned[row, col] = value
    arrays[TARGET] = poisoned
    plans = [TensorPlan(name, a.dtype, a.shape) for name, a in arrays.items()]
    write_safetensors(path, plans, list(arrays.values()))


@pytest.fixture
def checkpoint(make_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(make_checkpoint("qwen3"), tmp_path / "ckpt"))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(("fmt", "quant"), [("gguf", "q8_0"), ("gguf", "f16"), ("onnx", "f32"), ("onnx", "bf16")])
def test_a_non_finite_weight_is_refused_by_name(checkpoint, tmp_path, value, fmt, quant):
    _poison(checkpoint, value, 5, 3)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--format", fmt, "--quant", quant, "-o", str(out),
                                      "--no-verify"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {checkpoint}: tensor '{TARGET}' holds a NaN or Inf at "
        f"[5, 3]; refusing to export a model that cannot compute"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_weight_that_overflows_f16_is_refused_for_an_f16_export(checkpoint, tmp_path):
    _poison(checkpoint, 1e6, 2, 7)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "onnx", "--quant", "f16", "-o", str(out)])
    assert result.exit_code == 1
    assert "after casting to float16 (its value 1000000.0 is out of range)" in result.stderr
    assert not out.exists()
    ok = CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "onnx", "--quant", "f32", "-o", str(out)])
    assert ok.exit_code == 0, ok.output  # legal in f32
    assert json.loads((out / "genai_config.json").read_text())["model"]["type"] == "qwen3"


@pytest.mark.parametrize("quant", ["int4", "fp32"])
def test_a_non_finite_weight_is_refused_by_name_in_a_target_build(checkpoint, tmp_path, quant):
    """A --target build reads the checkpoint's weights only as its passes and writer need them (quantized, or
    copied across): the refusal then names the weight file, and nothing is written."""
    _poison(checkpoint, np.nan, 5, 3)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(checkpoint), "--format", "onnx", "--target", "cpu", "--quant",
                                      quant, "-o", str(out), "--no-verify"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {(checkpoint / 'model.safetensors').resolve()}: tensor '{TARGET}' holds a NaN or Inf at [5, 3]; "
        "refusing to export a model that cannot compute"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
