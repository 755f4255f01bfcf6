"""Untrusted checkpoint folders: index.json, FIFOs, permissions, pickles: each loads or is refused with one
QwdeployError line naming the file and the problem, never another exception, a hang or an allocation sized
by a lie."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.errors import CheckpointError

from untrusted import entry, fifo, refused, st_file, unprivileged

RNG = np.random.default_rng(10)


def linked_copy(source: Path, dest: Path) -> Path:
    """A private checkpoint: small files copied, weights and tokenizer linked (never write through those)."""
    dest.mkdir()
    for item in source.iterdir():
        if item.suffix == ".safetensors" or item.name == "tokenizer.json":
            (dest / item.name).symlink_to(item)
        else:
            shutil.copy(item, dest / item.name)
    return dest


@pytest.fixture
def ckpt(make_checkpoint, tmp_path) -> Path:
    return linked_copy(make_checkpoint("qwen2"), tmp_path / "ckpt")


@pytest.fixture
def sharded(make_checkpoint, tmp_path) -> Path:
    return linked_copy(make_checkpoint("qwen2", max_shard_bytes=4 * 1024 * 1024), tmp_path / "sharded")


def set_shard(sharded: Path, shard: object) -> Path:
    index = sharded / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    doc["weight_map"][next(iter(doc["weight_map"]))] = shard
    index.write_text(json.dumps(doc))
    return index


@pytest.mark.parametrize("shard, problem", [
    (7, "not a file name"), (["a.safetensors"], "not a file name"), ("", "not a file name"),
    ("a\0b.safetensors", "not a file name"),
    ("../outside.safetensors", "leaves the checkpoint folder"),
    ("sub/../../outside.safetensors", "leaves the checkpoint folder"),
    ("OUTSIDE", "leaves the checkpoint folder"),
])
def test_index_shard_names(sharded, tmp_path, shard, problem):
    # A valid shard waits outside, so following the name would load without complaint.
    outside = st_file(tmp_path / "outside.safetensors", entry())
    index = set_shard(sharded, str(outside) if shard == "OUTSIDE" else shard)
    refused(lambda: open_checkpoint(sharded), CheckpointError, index, problem)


def test_shards_linked_from_inside_the_folder_are_followed(sharded):
    assert all(p.is_symlink() for p in sharded.glob("*.safetensors"))
    assert len(open_checkpoint(sharded).validate()) > 10


@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "tokenizer_config.json",
                                  "model.safetensors.index.json", "model-00001-of-00002.safetensors"])
def test_fifo_in_checkpoint_is_refused_without_hanging(sharded, name):
    path = fifo(sharded / name)
    refused(lambda: open_checkpoint(sharded), CheckpointError, path, "not a regular file")


def test_fifo_single_weights_and_chat_template(ckpt):
    template = fifo(ckpt / "chat_template.jinja")
    refused(lambda: open_checkpoint(ckpt).chat_template, CheckpointError, template, "not a regular file")
    template.unlink()
    weights = fifo(ckpt / "model.safetensors")  # `inspect` used to hang here forever
    refused(lambda: open_checkpoint(ckpt), CheckpointError, weights, "not a regular file")


def test_oversized_json_is_refused_unread(ckpt):
    path = ckpt / "tokenizer_config.json"
    with open(path, "r+b") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: costs no disk
    refused(lambda: open_checkpoint(ckpt), CheckpointError, path, r"more than the \d+")


@pytest.mark.parametrize("name", ["config.json", "generation_config.json", "tokenizer_config.json",
                                  "model.safetensors.index.json"])
def test_unreadable_checkpoint_file(sharded, name):
    (sharded / name).chmod(0)
    assert unprivileged(f"open_checkpoint({str(sharded)!r})") == f"{sharded / name}: cannot read (Permission denied)"


@pytest.mark.parametrize("mode", [0o000, 0o400, 0o100])
def test_unreadable_checkpoint_folder(ckpt, mode):
    ckpt.chmod(mode)
    try:
        line = unprivileged(f"open_checkpoint({str(ckpt)!r})")
    finally:
        ckpt.chmod(0o755)
    assert line == f"{ckpt}: cannot read folder (Permission denied)"


def test_checkpoint_under_an_unsearchable_folder(ckpt):
    ckpt.parent.chmod(0o600)
    try:
        line = unprivileged(f"open_checkpoint({str(ckpt)!r})")
    finally:
        ckpt.parent.chmod(0o755)
    assert line == f"{ckpt}: cannot read (Permission denied)"


def pickled(kind: str, torch) -> object:
    def tensor(*shape: int, dtype: type = np.float32):
        return torch.from_numpy(RNG.standard_normal(shape).astype(dtype))

    return {"ints": {"a": 1, "b": 2}, "list": [tensor(3)], "nested": {"model": {"w": tensor(2)}},
            "tensor": tensor(6), "complex": {"w": tensor(4, dtype=np.complex64)}}[kind]


@pytest.mark.parametrize("kind, problem", [
    ("ints", "map 'a' to a int, not a dense tensor"),
    ("list", "hold a list, not a dict of tensors"),
    ("nested", "map 'model' to a dict, not a dense tensor"),
    ("tensor", "hold a Tensor, not a dict of tensors"),
    ("complex", "'w' has unsupported dtype torch.complex64"),
])
def test_trusted_pickle_holding_non_tensors(ckpt, kind, problem):
    import torch
    (ckpt / "model.safetensors").unlink()
    torch.save(pickled(kind, torch), ckpt / "pytorch_model.bin")
    refused(lambda: open_checkpoint(ckpt, trust_pickle=True), CheckpointError, ckpt / "pytorch_model.bin", problem)


def test_bad_config_on_disk_names_the_file(ckpt):
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "eos_token_id": "abc"}))
    refused(lambda: open_checkpoint(ckpt), CheckpointError, ckpt / "config.json", "'eos_token_id'")
