"""The ONNX folder: valid standard-op graph, weights only by reference, atomic output, refusals, CLI."""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path

import numpy as np
import pytest

import onnx
import onnxruntime as ort

from click.testing import CliRunner  # noqa: E402

from qwdeploy.exporters.onnx import weights as weights_module  # noqa: E402
from qwdeploy.exporters.onnx.exporter import export  # noqa: E402
from qwdeploy.exporters.request import ExportRequest  # noqa: E402
from qwdeploy.toolkit.checkpoint import open_checkpoint  # noqa: E402
from qwdeploy.toolkit.cli.main import cli  # noqa: E402
from qwdeploy.toolkit.errors import OutputError, QwdeployError  # noqa: E402
from qwdeploy.toolkit.profiles import load_profile  # noqa: E402

STANDARD_DOMAINS = ("", "ai.onnx")


def _export(checkpoint: Path, out: Path, **kwargs) -> Path:
    # --verify has its own tests (tests/parity/test_onnx_verify.py); here it would add a transformers run each.
    export(ExportRequest(open_checkpoint(checkpoint), out, show_progress=False, verify=False, **kwargs))
    return out


def _logits(folder: Path, ids: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(ids.shape[1])[None]}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    return session.run(["logits"], feeds)[0]


def test_full_check_standard_ops_external_weights(tiny, tmp_path):
    out = _export(tiny, tmp_path / "onnx")
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model.onnx.data", "genai_config.json",
                                               "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert {n.domain for n in model.graph.node} <= set(STANDARD_DOMAINS)
    assert all(o.domain in STANDARD_DOMAINS for o in model.opset_import)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    spec = open_checkpoint(tiny).spec
    assert {t.name for t in external} == {t.name for t in open_checkpoint(tiny).expected()}
    assert all(len(t.raw_data) == 0 for t in external)
    assert (out / "model.onnx").stat().st_size < 256 * 1024  # the proto holds references, not weights
    if spec.tie_word_embeddings:
        assert "lm_head.weight" not in {t.name for t in model.graph.initializer}


def test_io_names_and_dynamic_axes(make_checkpoint, tmp_path):
    model = onnx.load(str(_export(make_checkpoint("qwen3"), tmp_path / "onnx") / "model.onnx"),
                      load_external_data=False)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {i.name: dims(i) for i in model.graph.input}
    outputs = {o.name: dims(o) for o in model.graph.output}
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]
    assert inputs["attention_mask"] == ["batch_size", "total_sequence_length"]
    assert inputs["position_ids"] == ["batch_size", "sequence_length"]
    assert inputs["past_key_values.1.value"] == ["batch_size", 2, "past_sequence_length", 32]
    assert outputs["logits"] == ["batch_size", "sequence_length", 151936]
    assert outputs["present.0.key"] == ["batch_size", 2, "total_sequence_length", 32]


@pytest.mark.parametrize("opset", [13, 18])
def test_other_opsets_compute_the_same(make_checkpoint, tmp_path, opset):
    checkpoint = make_checkpoint("qwen3moe")
    base = load_profile("ascend-310b")
    profile = dataclasses.replace(base, deploy=dataclasses.replace(base.deploy, onnx_opset=opset))
    out = _export(checkpoint, tmp_path / "onnx", quant="f32", profile=profile)
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert model.opset_import[0].version == opset
    onnx.checker.check_model(str(out / "model.onnx"), full_check=True)
    ids = np.array([[9707, 1879, 11, 358]], dtype=np.int64)
    reference = _logits(_export(checkpoint, tmp_path / "default"), ids)
    np.testing.assert_allclose(_logits(out, ids), reference, atol=1e-5, rtol=0)


def test_genai_config_maps_our_io(make_checkpoint, tmp_path):
    config = json.loads((_export(make_checkpoint("qwen2moe"), tmp_path / "onnx") / "genai_config.json").read_text())
    model = config["model"]
    assert model["type"] == "qwen2"
    assert model["eos_token_id"] == [151645, 151643] and model["pad_token_id"] == 151643
    assert model["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert model["decoder"]["outputs"]["present_value_names"] == "present.%d.value"
    assert model["decoder"]["head_size"] == 16 and model["decoder"]["num_key_value_heads"] == 2
    assert config["search"]["past_present_share_buffer"] is False


@pytest.mark.parametrize("quant, message", [
    ("int4", r"add --target \(cpu or cuda\)"), ("q4_k_m", "unknown ONNX weight type"),
])
def test_unsupported_quant_is_refused(make_checkpoint, tmp_path, quant, message):
    with pytest.raises(QwdeployError, match=message):
        _export(make_checkpoint("qwen2"), tmp_path / "onnx", quant=quant)
    assert not (tmp_path / "onnx").exists()


def test_unknown_target_is_refused(make_checkpoint, tmp_path):
    with pytest.raises(QwdeployError, match="unknown backend 'tpu'"):
        _export(make_checkpoint("qwen2"), tmp_path / "onnx", target="tpu")


def test_non_empty_output_is_refused_and_left_alone(make_checkpoint, tmp_path):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        _export(make_checkpoint("qwen2"), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    _export(make_checkpoint("qwen2"), out, force=True)
    assert not (out / "keep.txt").exists() and (out / "model.onnx").is_file()


def test_write_failure_leaves_nothing_behind(make_checkpoint, tmp_path, monkeypatch):
    written = []

    def failing_write(self, name, shape, elem_type, chunks):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(name)
        return real_write(self, name, shape, elem_type, chunks)

    real_write = weights_module.ExternalDataWriter.write
    monkeypatch.setattr(weights_module.ExternalDataWriter, "write", failing_write)
    with pytest.raises(OutputError, match="no space left"):
        _export(make_checkpoint("qwen2"), tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_transposed_weight_lets_its_stored_rows_go_a_band_at_a_time(make_checkpoint, tmp_path, monkeypatch):
    """An untied LM head, the largest matrix of a model, goes into the graph transposed for MatMul: every block of
    it reads all stored rows, and the writer lets each band of them go once copied instead of holding the whole
    head mapped until the tensor is written (1.09 GB for a 7B's)."""
    from qwdeploy.toolkit import external_data
    from qwdeploy.toolkit.checkpoint import Checkpoint

    checkpoint = make_checkpoint("qwen3")
    stored = open_checkpoint(checkpoint).read("lm_head.weight")  # [vocab, hidden], untied
    monkeypatch.setattr(external_data, "SLICE_BYTES", 1 << 20)
    released = []
    real_release = Checkpoint.release
    monkeypatch.setattr(Checkpoint, "release", lambda self, name, begin=0, end=None: (
        released.append((begin, end)) if name == "lm_head.weight" else None, real_release(self, name, begin, end)))
    out = _export(checkpoint, tmp_path / "onnx")

    head = next(t for t in onnx.load(str(out / "model.onnx")).graph.initializer if t.name == "lm_head.weight")
    assert np.array_equal(onnx.numpy_helper.to_array(head), stored.astype(np.float32).T)
    band_bytes = external_data.rows_per_slice(stored.shape, stored.itemsize) * stored[:1].nbytes
    step = external_data.rows_per_slice(stored.T.shape, 4) * external_data.TRANSPOSED_BLOCK_SLICES  # float32 rows
    one_pass = [(b, min(b + band_bytes, stored.nbytes)) for b in range(0, stored.nbytes, band_bytes)]
    assert len(one_pass) > 1 and released == one_pass * -(-stored.shape[1] // step) + [(0, None)]  # then all of it


@pytest.mark.parametrize("target", ["cpu", "cann"])
def test_a_target_build_writes_no_float_copy_of_the_checkpoint(make_checkpoint, tmp_path, monkeypatch, target):
    """The portable graph a backend builds from holds references into the checkpoint (nothing in its data file);
    the artifact holds none: every weight lies in its own data file."""
    from qwdeploy.exporters.onnx import exporter as exporter_module
    from qwdeploy.toolkit.external_data import DERIVE_KEY

    checkpoint = make_checkpoint("qwen2")
    portables = []

    def write_onnx(*args, **kwargs):
        written = real_write_onnx(*args, **kwargs)
        path = args[3]
        portables.append((onnx.load(str(path), load_external_data=False), (path.parent / "model.onnx.data").stat()))
        return written

    real_write_onnx = exporter_module.write_onnx
    monkeypatch.setattr(exporter_module, "write_onnx", write_onnx)
    settings = dict(quant="int4") if target == "cpu" else dict(profile=load_profile("ascend-310p"))
    out = _export(checkpoint, tmp_path / "out", target=target, **settings)
    (portable, data), = portables
    fields = {t.name: {e.key: e.value for e in t.external_data} for t in portable.graph.initializer
              if t.external_data}
    assert data.st_size == 0 and fields.keys() == {t.name for t in open_checkpoint(checkpoint).expected()}
    assert {f[DERIVE_KEY] for name, f in fields.items() if "_proj." in name and name.endswith("weight")} == {"BF16,T"}
    assert {f[DERIVE_KEY] for name, f in fields.items() if "norm" in name or "embed" in name} == {"BF16"}
    assert {Path(f["location"]) for f in fields.values()} == {(checkpoint / "model.safetensors").resolve()}
    built = onnx.load(str(out / "model.onnx"), load_external_data=False)
    locations = {e.value for t in built.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"model.onnx.data"}
    assert not any(e.key == DERIVE_KEY for t in built.graph.initializer for e in t.external_data)


def test_cli_exports_a_folder(make_checkpoint, tmp_path):
    out = tmp_path / "onnx"
    result = CliRunner().invoke(cli, ["export", str(make_checkpoint("qwen3")), "--format", "onnx", "-o", str(out),
                                      "--quant", "f16", "--no-verify"])
    assert result.exit_code == 0, result.output
    assert "model.onnx" in result.output and "f16" in result.output
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert model.graph.input[3].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    again = CliRunner().invoke(cli, ["export", str(make_checkpoint("qwen3")), "--format", "onnx", "-o", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output


def test_via_optimum_without_optimum_says_what_to_install(make_checkpoint, tmp_path, monkeypatch):
    import sys

    from qwdeploy.toolkit.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "optimum.exporters.onnx", None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install"):
        _export(make_checkpoint("qwen2"), tmp_path / "onnx", via="optimum")
    assert not (tmp_path / "onnx").exists()
