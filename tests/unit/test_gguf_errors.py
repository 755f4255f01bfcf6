"""Bad input to the GGUF exporter: one clear line, non-zero exit, nothing left behind."""

from __future__ import annotations

import errno
import json

import gguf  # noqa: F401  (the dev install has gguf: missing is a failure, not a skip)
import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


def _fails_cleanly(result, message, out_dir):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(out_dir.iterdir()), list(out_dir.iterdir())


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_cli_export_works(make_checkpoint, out_dir):
    result = run(make_checkpoint("qwen3"), "--format", "gguf", "--quant", "q8_0", "-o", out_dir / "m.gguf",
                 "--no-verify")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out_dir.iterdir()] == ["m.gguf"]


def test_unknown_quant_type(make_checkpoint, out_dir):
    result = run(make_checkpoint("qwen3"), "--format", "gguf", "--quant", "q3_xl", "-o", out_dir / "m.gguf")
    _fails_cleanly(result, "unknown GGUF type 'q3_xl'", out_dir)


def test_type_the_profile_does_not_run(make_checkpoint, out_dir):
    result = run(make_checkpoint("qwen3"), "--format", "gguf", "--quant", "q4_0", "--profile", "ascend-310p",
                 "-o", out_dir / "m.gguf")
    _fails_cleanly(result, "does not run q4_0", out_dir)


def test_architecture_llama_cpp_cannot_run(tiny_copy, out_dir):
    config = json.loads((tiny_copy / "config.json").read_text())
    config.update(use_sliding_window=True, sliding_window=64, max_window_layers=1)
    (tiny_copy / "config.json").write_text(json.dumps(config))
    _fails_cleanly(run(tiny_copy, "--format", "gguf", "-o", out_dir / "m.gguf"), "sliding-window", out_dir)


def test_unsupported_architecture(tiny_copy, out_dir):
    config = json.loads((tiny_copy / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (tiny_copy / "config.json").write_text(json.dumps(config))
    _fails_cleanly(run(tiny_copy, "--format", "gguf", "-o", out_dir / "m.gguf"), "not supported", out_dir)


def test_corrupted_checkpoint(make_checkpoint, tmp_path, out_dir):
    import shutil

    ckpt = shutil.copytree(make_checkpoint("qwen2"), tmp_path / "broken")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    _fails_cleanly(run(ckpt, "--format", "gguf", "-o", out_dir / "m.gguf"), "truncated", out_dir)


def test_output_not_writable(make_checkpoint, tmp_path, out_dir):
    blocker = out_dir / "file"
    blocker.write_text("x")
    result = run(make_checkpoint("qwen3"), "--format", "gguf", "-o", blocker / "m.gguf")
    assert result.exit_code != 0 and "cannot create parent directory" in result.stderr
    assert [p.name for p in out_dir.iterdir()] == ["file"]


def test_existing_output_needs_force(make_checkpoint, out_dir):
    target = out_dir / "m.gguf"
    target.write_text("precious")
    result = run(make_checkpoint("qwen3"), "--format", "gguf", "--quant", "q8_0", "-o", target, "--no-verify")
    assert result.exit_code != 0 and "--force" in result.stderr and target.read_text() == "precious"


def test_disk_full_leaves_nothing(make_checkpoint, out_dir, monkeypatch):
    from qwdeploy.exporters.gguf import writer

    real = writer._write_all
    calls = []

    def fill_disk(out, parts, progress):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(out, parts, progress)

    monkeypatch.setattr(writer, "_write_all", fill_disk)
    result = run(make_checkpoint("qwen3"), "--format", "gguf", "--quant", "q8_0", "-o", out_dir / "m.gguf")
    _fails_cleanly(result, "no space left", out_dir)
