from __future__ import annotations

import pytest

from qwdeploy.toolkit.errors import ProfileError
from qwdeploy.toolkit.profiles import load_profile, profile_names

REQUIRED = ("x86-server", "rpi5", "jetson-orin-nano", "h100", "ascend-310p", "ascend-310b", "ascend-910b")


def test_required_profiles_ship_and_load():
    assert set(REQUIRED) <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.memory.budget_gib > 0 and p.cpu.arch in ("x86_64", "aarch64")
        assert p.deploy.gguf_quant in p.deploy.dtypes


def test_profile_facts():
    assert load_profile("jetson-orin-nano").accelerator.cuda_arch == "sm_87"
    assert load_profile("h100").accelerator.cuda_arch == "sm_90"
    p310 = load_profile("ascend-310p")
    assert p310.accelerator.soc_version == "Ascend310P3" and p310.deploy.backend == "cann"
    assert "bf16" not in p310.deploy.dtypes
    assert load_profile("rpi5").cpu.isa == ["neon", "fp16", "dotprod"]


GOOD = """
description = "test board"
[memory]
total_gib = 4
budget_gib = 3
[cpu]
arch = "aarch64"
cores = 4
[deploy]
format = "gguf"
backend = "cpu"
dtypes = ["q4_0"]
gguf_quant = "q4_0"
onnx_quant = "int4"
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "\nmystery = 1\n", "unknown key 'mystery'"),
        (GOOD.replace("cores = 4", "cores = 4\nspeed = 2"), r"\[cpu\] has unknown key 'speed'"),
        (GOOD.replace("cores = 4", 'cores = "four"'), r"\[cpu\] 'cores' must be a int"),
        (GOOD.replace('arch = "aarch64"', 'arch = "riscv"'), "unknown value 'riscv'"),
        (GOOD.replace('backend = "cpu"', ""), "missing required key 'backend'"),
        (GOOD.replace('backend = "cpu"', 'backend = "cuda"'), "needs a 'cuda' accelerator"),
        (GOOD.replace("[memory]", "[memory\n"), "not valid TOML"),
    ],
)
def test_loader_rejects_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "board.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message) as exc:
        load_profile(path)
    assert str(path) in str(exc.value)


def test_user_profile_file_loads(tmp_path):
    (tmp_path / "board.toml").write_text(GOOD)
    p = load_profile(tmp_path / "board.toml")
    assert p.name == "board" and p.memory.total_gib == 4.0 and p.accelerator.kind == "none"


def test_unknown_profile_lists_known():
    with pytest.raises(ProfileError, match="unknown profile 'pi9'; known: .*rpi5"):
        load_profile("pi9")
