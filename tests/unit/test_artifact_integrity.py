"""Artifacts carry sha256 digests computed while writing; `profile` checks them, and the structure of
artifacts from anywhere, before an engine opens them. Damage is one line naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import gguf
import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.checksums import CHECKSUMS_FILE, GGUF_KEY, check_folder, check_gguf, gguf_digest_offset
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import ArtifactError

PROFILE = ("--runs", "1", "--gen", "2", "--prompt-len", "4")


def _cli(*args: object):
    return CliRunner().invoke(cli, list(map(str, args)))


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(f in lines[-1] for f in fragments), result.stderr


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(data)


@pytest.fixture(scope="module")
def gguf_files(make_checkpoint, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    files = {}
    for quant in ("q8_0", "q4_k_m"):
        files[quant] = root / f"m-{quant}.gguf"
        result = _cli("export", make_checkpoint("qwen3"), "--format", "gguf", "--quant", quant, "-o", files[quant],
                      "--no-verify")
        assert result.exit_code == 0, result.output
    return files


@pytest.fixture(scope="module")
def onnx_folder(make_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "m"
    assert _cli("export", make_checkpoint("qwen2"), "--format", "onnx", "-o", out).exit_code == 0
    return out


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_a_gguf_carries_the_sha256_of_its_own_bytes(gguf_files, quant):
    path = gguf_files[quant]
    offset = gguf_digest_offset(path)
    data = bytearray(path.read_bytes())
    stored = bytes(data[offset:offset + 64]).decode()
    data[offset:offset + 64] = b"0" * 64
    assert hashlib.sha256(data).hexdigest() == stored  # an independent recomputation
    assert check_gguf(path)
    assert GGUF_KEY in gguf.GGUFReader(path).fields  # gguf-py reads it as an ordinary key


@pytest.mark.parametrize("where", ["metadata", "tensor data", "last byte"])
def test_one_flipped_byte_in_a_gguf_is_refused_before_loading(gguf_files, tmp_path, where):
    path = Path(shutil.copy(gguf_files["q8_0"], tmp_path / "m.gguf"))
    size = path.stat().st_size
    _flip(path, {"metadata": 200, "tensor data": size // 2, "last byte": size - 1}[where])
    _one_line_error(_cli("profile", path, *PROFILE), str(path), "does not match the sha256 qwdeploy stored in it")


def test_a_truncated_gguf_is_one_line(gguf_files, tmp_path):
    path = tmp_path / "cut.gguf"
    path.write_bytes(gguf_files["q8_0"].read_bytes()[:100])
    _one_line_error(_cli("profile", path, *PROFILE), str(path), "corrupt")


def test_an_onnx_folder_lists_every_file_for_sha256sum(onnx_folder):
    listed = [line.split("  ", 1)[1] for line in (onnx_folder / CHECKSUMS_FILE).read_text().splitlines()]
    assert sorted(listed) == sorted(p.name for p in onnx_folder.iterdir() if p.name != CHECKSUMS_FILE)
    result = subprocess.run(["sha256sum", "--check", "--strict", CHECKSUMS_FILE], cwd=onnx_folder,
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.count(": OK") == len(listed), result.stdout + result.stderr


def test_a_backend_folder_is_sealed_too(make_checkpoint, tmp_path):
    out = tmp_path / "cpu"
    result = _cli("export", make_checkpoint("qwen2"), "--format", "onnx", "--target", "cpu", "--quant", "int8",
                  "-o", out)
    assert result.exit_code == 0, result.output
    assert check_folder(out)
    _flip(out / "model.onnx.data", 4096)
    with pytest.raises(ArtifactError, match="model.onnx.data does not match its checksum"):
        check_folder(out)


def _damaged(onnx_folder: Path, tmp_path: Path, damage) -> Path:
    folder = Path(shutil.copytree(onnx_folder, tmp_path / "damaged"))
    damage(folder)
    return folder


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: _flip(f / "model.onnx.data", 5000), "model.onnx.data does not match its checksum"),
    (lambda f: _flip(f / "tokenizer.json", 10), "tokenizer.json does not match its checksum"),
    (lambda f: (f / "model.onnx.data").unlink(), "model.onnx.data is missing"),
    (lambda f: ((f / CHECKSUMS_FILE).unlink(), (f / "model.onnx.data").write_bytes(b"\x01" * 1000)),
     "model.onnx.data is truncated"),
    (lambda f: ((f / CHECKSUMS_FILE).unlink(), (f / "model.onnx.data").unlink()), "model.onnx.data is missing"),
    (lambda f: ((f / CHECKSUMS_FILE).unlink(), (f / "model.onnx").write_bytes(b"\x08\x96garbage" * 9)),
     "not a readable ONNX model"),
    (lambda f: (f / CHECKSUMS_FILE).write_text("abc  model.onnx\n"), "line 1 is not '<sha256>  <file>'"),
])
def test_a_damaged_onnx_folder_is_one_line(onnx_folder, tmp_path, damage, message):
    folder = _damaged(onnx_folder, tmp_path, damage)
    _one_line_error(_cli("profile", folder, *PROFILE), message)


def test_a_broken_checkpoint_is_one_line_when_profiled(make_checkpoint, tmp_path):
    folder = Path(shutil.copytree(make_checkpoint("qwen2"), tmp_path / "ckpt"))
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    _one_line_error(_cli("profile", folder, *PROFILE), "is missing (config implies")


def test_an_intact_artifact_is_profiled_and_says_how_it_was_checked(gguf_files):
    result = _cli("profile", gguf_files["q8_0"], *PROFILE)
    assert result.exit_code == 0, result.output
    assert "sha256 verified" in result.stdout
