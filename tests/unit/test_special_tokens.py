"""bos/eos/pad ids resolve from generation_config.json, config.json, then tokenizer_config.json's token
names (how many fine-tuned checkpoints ship); a missing or unusable tokenizer stops an export up front."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import onnxruntime_genai as og
import pytest
from click.testing import CliRunner

from qwdeploy.exporters.gguf.reader import GGUFFile
from qwdeploy.toolkit.checkpoint import Checkpoint
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import CheckpointError
from qwdeploy.toolkit.vocabulary import read_vocabulary, special_tokens

ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645


def _export(*args: object):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


@pytest.fixture
def names_only(make_checkpoint, tmp_path) -> Path:
    """A checkpoint whose configs carry no token ids: only tokenizer_config.json names them, as strings."""
    folder = Path(shutil.copytree(make_checkpoint("qwen2"), tmp_path / "ckpt"))
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer.update(bos_token="<|im_start|>", eos_token={"content": "<|im_end|>", "special": True},
                     pad_token="<|endoftext|>")
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return folder


def test_ids_resolve_from_token_names(names_only):
    ckpt = Checkpoint(names_only)
    ids = special_tokens(ckpt, read_vocabulary(ckpt))
    assert (ids.bos, ids.eos, ids.pad) == (IM_START, (IM_END,), ENDOFTEXT)


def test_the_onnx_folder_of_a_names_only_checkpoint_runs_in_genai(names_only, tmp_path):
    out = tmp_path / "onnx"
    result = _export(names_only, "--format", "onnx", "-o", out)
    assert result.exit_code == 0, result.output
    model = json.loads((out / "genai_config.json").read_text())["model"]
    assert (model["bos_token_id"], model["eos_token_id"], model["pad_token_id"]) == (IM_START, [IM_END], ENDOFTEXT)
    og.Model(str(out))  # onnxruntime-genai accepts the config


def test_the_gguf_of_a_names_only_checkpoint_names_the_same_ids(names_only, tmp_path):
    out = tmp_path / "m.gguf"
    assert _export(names_only, "--format", "gguf", "-o", out, "--no-verify").exit_code == 0
    meta = GGUFFile(out).metadata
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"],
            meta["tokenizer.ggml.padding_token_id"]) == (IM_START, IM_END, ENDOFTEXT)


def test_generation_config_wins_over_token_names(names_only):
    (names_only / "generation_config.json").write_text(json.dumps({"eos_token_id": [IM_END, ENDOFTEXT],
                                                                  "bos_token_id": ENDOFTEXT}))
    ckpt = Checkpoint(names_only)
    ids = special_tokens(ckpt, read_vocabulary(ckpt))
    assert (ids.bos, ids.eos) == (ENDOFTEXT, (IM_END, ENDOFTEXT))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("eos_token", "<|no_such_token|>", "special token '<|no_such_token|>' is not in the vocabulary"),
    ("eos_token", None, "no end-of-sequence token"),
])
def test_unresolvable_ids_stop_the_onnx_export_up_front(names_only, tmp_path, field, value, message):
    tokenizer = json.loads((names_only / "tokenizer_config.json").read_text())
    tokenizer[field] = value
    (names_only / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    result = _export(names_only, "--format", "onnx", "-o", tmp_path / "onnx")
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "onnx").exists()


def test_out_of_range_ids_in_generation_config_are_refused(names_only):
    (names_only / "generation_config.json").write_text(json.dumps({"eos_token_id": [IM_END, 10**9]}))
    ckpt = Checkpoint(names_only)
    with pytest.raises(CheckpointError, match=r"generation_config.json: 'eos_token_id' must be token ids below"):
        special_tokens(ckpt, read_vocabulary(ckpt))


@pytest.mark.parametrize(("content", "message"), [
    (None, "tokenizer.json is missing"),
    ("{not json", "corrupt tokenizer.json: not valid JSON"),
    ("FIFO", "not a regular file"),
    ('{"model": {"type": "BPE", "vocab": {"a": -4}, "merges": []}}', "not a BPE tokenizer.json"),
    ('{"model": {"type": "Unigram", "vocab": {"a": 0}, "merges": []}}', "expected BPE"),
])
@pytest.mark.parametrize("fmt", ["onnx", "gguf"])
def test_a_missing_or_garbage_tokenizer_is_refused_before_writing(names_only, tmp_path, content, message, fmt):
    if content in (None, "FIFO"):
        (names_only / "tokenizer.json").unlink()
        if content == "FIFO":
            os.mkfifo(names_only / "tokenizer.json")
    else:
        (names_only / "tokenizer.json").write_text(content)
    out = tmp_path / "out"
    result = _export(names_only, "--format", fmt, "-o", out, "--no-verify")
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert list(tmp_path.iterdir()) == [names_only]
