from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pytest
from click.testing import CliRunner

from qwdeploy.toolkit import __version__
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.demo import demo_config
from qwdeploy.toolkit.spec import spec_from_config
from qwdeploy.toolkit.tensors import parameter_count
from qwdeploy.toolkit.checkpoint import open_checkpoint


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_console_script_is_installed():
    out = subprocess.run(["qwdeploy", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("inspect", "profiles", "demo-checkpoint"):
        assert command in out


def _stored_parameters(directory) -> int:
    """Elements in the checkpoint's safetensors files, read from their headers (8-byte length + JSON)."""
    total = 0
    for path in sorted(directory.glob("*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        total += sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    return total


def test_inspect_reports_the_numbers(tiny):
    result = run("inspect", tiny, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    # Expectations from the files themselves, not from the code inspect runs.
    config = json.loads((tiny / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim", config["hidden_size"] // heads)
    assert doc["spec"]["architecture"] == config["architectures"][0]
    stored = _stored_parameters(tiny)
    assert stored > 0 and doc["parameters"] == stored
    assert doc["spec"]["num_layers"] == config["num_hidden_layers"] and doc["spec"]["head_dim"] == head_dim
    assert doc["chat_template"] is True
    assert doc["exporters"]["gguf"]["supported"] and doc["exporters"]["onnx"]["supported"]
    assert doc["backends"]["cpu"]["supported"] and doc["backends"]["cpu"]["available"]
    table = run("inspect", tiny)
    assert table.exit_code == 0
    assert f"{stored:,}" in table.output
    assert f"{heads} / {kv_heads} / {head_dim}" in table.output
    if "num_experts" in config:
        assert f"{config['num_experts']} / {config['num_experts_per_tok']}" in table.output
    assert "backend cpu" in table.output and "export gguf" in table.output


@pytest.mark.parametrize("arch, published", [("qwen2", 494_032_768), ("qwen3", 596_049_920)])
def test_parameter_count_of_the_real_shapes(arch, published):
    """The "small" presets are Qwen2.5-0.5B's and Qwen3-0.6B's shapes; their published parameter counts
    (tied embeddings: the table is counted once)."""
    assert parameter_count(spec_from_config(demo_config(arch, "small"))) == published


def _one_clean_line(result):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_inspect_fails_on_a_checkpoint_that_would_fail_export(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    config["num_key_value_heads"] = config["num_attention_heads"]
    (tiny_copy / "config.json").write_text(json.dumps(config))
    line = _one_clean_line(run("inspect", tiny_copy))
    assert "config implies" in line


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 4), "too short"),
        (lambda d: (d / "config.json").unlink(), "config.json not found"),
        (lambda d: (d / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}'), "not supported"),
    ],
)
def test_user_mistakes_exit_with_one_line(tiny_copy, damage, message):
    damage(tiny_copy)
    assert message in _one_clean_line(run("inspect", tiny_copy))


def test_unknown_profile_is_one_line():
    assert "unknown profile" in _one_clean_line(run("profiles", "show", "nope"))


def test_profiles_list_and_show():
    listing = run("profiles", "list")
    assert listing.exit_code == 0 and "ascend-310p" in listing.output and "sm_87" in listing.output
    shown = run("profiles", "show", "ascend-310p")
    assert shown.exit_code == 0 and "Ascend310P3" in shown.output and "cann_version" in shown.output


def test_demo_checkpoint_refuses_to_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    line = _one_clean_line(run("demo-checkpoint", tmp_path / "out"))
    assert "not empty" in line and (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_demo_checkpoint_writes_atomically(tmp_path):
    result = run("demo-checkpoint", tmp_path / "m", "--arch", "qwen2moe", "--dtype", "float16")
    assert result.exit_code == 0, result.output
    assert open_checkpoint(tmp_path / "m").spec.moe.shared_expert_intermediate_size == 96
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary left beside it


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-c", "from qwdeploy.toolkit.cli.main import main; main()", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert __version__ in out
