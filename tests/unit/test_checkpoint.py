from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.errors import CheckpointError, UnsupportedModelError
from qwdeploy.toolkit.safetensors_io import SafetensorsFile, TensorPlan, write_safetensors


def _rewrite(path, change):
    """Rewrite a safetensors file with `change(dict of arrays)` applied."""
    st = SafetensorsFile(path)
    arrays = {name: np.array(st.tensor(name)) for name in st.headers}
    st.close()
    change(arrays)
    plans = [TensorPlan(n, a.dtype, a.shape) for n, a in arrays.items()]
    write_safetensors(path, plans, iter(arrays.values()))


def test_reads_every_expected_tensor_and_casts(tiny):
    ckpt = open_checkpoint(tiny)
    expected = ckpt.validate()
    first = expected[0]
    raw = ckpt.read(first.name)
    assert raw.shape == first.shape and str(raw.dtype) == "bfloat16"
    assert not raw.flags.writeable  # memory-mapped, not copied
    as_f32 = ckpt.read(first.name, "float32")
    assert as_f32.dtype == np.float32 and np.abs(as_f32).max() > 0
    assert np.array_equal(as_f32, raw.astype(np.float32))  # bf16 → f32 is exact
    assert np.array_equal(ckpt.read(first.name, "bfloat16").view(np.uint16), raw.view(np.uint16))
    assert ckpt.chat_template and "im_start" in ckpt.chat_template
    assert ckpt.size_on_disk() > 0


def test_sharded_equals_single(make_checkpoint):
    single = open_checkpoint(make_checkpoint("qwen2"))
    sharded = open_checkpoint(make_checkpoint("qwen2", max_shard_bytes=4 * 1024 * 1024))
    assert len(sharded.weights.files()) > 1
    for tensor in single.validate():
        np.testing.assert_array_equal(single.read(tensor.name), sharded.read(tensor.name))


def test_missing_tensor(tiny_copy):
    _rewrite(tiny_copy / "model.safetensors", lambda a: a.pop("model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(CheckpointError, match="'model.layers.1.self_attn.k_proj.weight' is missing"):
        open_checkpoint(tiny_copy).validate()


def test_wrong_shape(tiny_copy):
    def shrink(arrays):
        arrays["model.norm.weight"] = arrays["model.norm.weight"][:-1].copy()

    _rewrite(tiny_copy / "model.safetensors", shrink)
    with pytest.raises(CheckpointError, match="'model.norm.weight' has shape .* config implies"):
        open_checkpoint(tiny_copy).validate()


def test_config_that_disagrees_with_weights(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    config["num_hidden_layers"] -= 1
    (tiny_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not described by config.json"):
        open_checkpoint(tiny_copy).validate()


def test_truncated_weights(tiny_copy):
    path = tiny_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated") as exc:
        open_checkpoint(tiny_copy)
    assert "model.safetensors" in str(exc.value)


def test_missing_shard_named_by_index(make_checkpoint, tmp_path):
    sharded = shutil.copytree(make_checkpoint("qwen2", max_shard_bytes=4 * 1024 * 1024), tmp_path / "s")
    next(sharded.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="shard 'model-00002.* is missing"):
        open_checkpoint(sharded)


def test_pickle_weights_are_refused_without_trust(tiny_copy):
    import torch
    ckpt = open_checkpoint(tiny_copy)
    state = {t.name: torch.from_numpy(ckpt.read(t.name, "float32").copy()) for t in ckpt.expected()}
    (tiny_copy / "model.safetensors").unlink()
    torch.save(state, tiny_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refusing pickle weights .* --trust-pickle"):
        open_checkpoint(tiny_copy)
    trusted = open_checkpoint(tiny_copy, trust_pickle=True)
    name = trusted.validate()[3].name
    np.testing.assert_array_equal(trusted.read(name), state[name].numpy())


def test_missing_config_and_bad_json(tiny_copy):
    (tiny_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        open_checkpoint(tiny_copy)
    (tiny_copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json not found"):
        open_checkpoint(tiny_copy)


def test_unsupported_architecture(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    config["architectures"] = ["MistralForCausalLM"]
    (tiny_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match="'MistralForCausalLM' is not supported"):
        open_checkpoint(tiny_copy)


def test_no_such_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        open_checkpoint(tmp_path / "nope")
