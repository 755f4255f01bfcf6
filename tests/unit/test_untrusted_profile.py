"""Untrusted device profile TOML: each loads or is refused with one QwdeployError line naming the file and
the problem, never another exception, a hang or an allocation sized by a lie."""

from __future__ import annotations

import pytest

from qwdeploy.toolkit.errors import ProfileError
from qwdeploy.toolkit.profiles import load_profile

from test_profiles import GOOD
from untrusted import fifo, refused, unprivileged


PROFILE = GOOD.replace("[deploy]", '[accelerator]\nkind = "none"\n[deploy]')  # a key to damage in every section


@pytest.mark.parametrize("old, new, problem", [
    ("budget_gib = 3", "budget_gib = -3", r"\[memory\] 'budget_gib' must be from 0.001 to 1e\+06, got -3"),
    ("budget_gib = 3", "budget_gib = 0", r"\[memory\] 'budget_gib' must be from 0.001"),
    ("total_gib = 4", "total_gib = -4.0", r"\[memory\] 'total_gib' must be from 0.001"),
    ("total_gib = 4", "total_gib = nan", r"\[memory\] 'total_gib' must be a finite number, got nan"),
    ('onnx_quant = "int4"', 'onnx_quant = "int4"\nusd_per_hour = nan', r"\[deploy\] 'usd_per_hour' must be a finite"),
    ('onnx_quant = "int4"', 'onnx_quant = "int4"\nusd_per_hour = -inf', r"'usd_per_hour' must be a finite"),
    ('onnx_quant = "int4"', 'onnx_quant = "int4"\nusd_per_hour = -5', r"'usd_per_hour' must be from 0 to"),
    ('kind = "none"', 'kind = "none"\nmemory_gib = -8.0', r"\[accelerator\] 'memory_gib' must be from 0"),
    ("cores = 4", "cores = 0", r"\[cpu\] 'cores' must be from 1 to 65536, got 0"),
    ("cores = 4", "cores = -2", r"\[cpu\] 'cores' must be from 1 to 65536"),
    ("cores = 4", "cores = " + "9" * 40, r"\[cpu\] 'cores' must be from 1 to 65536"),
    ('onnx_quant = "int4"', 'onnx_quant = "int4"\nonnx_opset = 3', r"'onnx_opset' must be from 11 to 30, got 3"),
    ('onnx_quant = "int4"', 'onnx_quant = "int4"\nonnx_opset = 99999', r"'onnx_opset' must be from 11 to 30"),
    ("cores = 4", "cores = 4\nx = " + "[" * 5000 + "]" * 5000, "not valid TOML .nested too deeply"),
    ("cores = 4", "cores = " + "1" * 5000, "not valid TOML"),
])
def test_bad_profile_values(tmp_path, old, new, problem):
    path = tmp_path / "board.toml"
    path.write_text(PROFILE)
    assert load_profile(path).cpu.cores == 4  # the unchanged text loads
    path.write_text(PROFILE.replace(old, new))
    refused(lambda: load_profile(path), ProfileError, path, problem)


def test_profile_fifo_unreadable_and_huge(tmp_path):
    path = fifo(tmp_path / "board.toml")
    refused(lambda: load_profile(path), ProfileError, path, "not a regular file")
    path.unlink()
    path.write_text(PROFILE)
    with open(path, "r+b") as f:
        f.truncate(2 * 1024 * 1024)
    refused(lambda: load_profile(path), ProfileError, path, r"more than the 1048576")
    path.write_text(PROFILE)
    path.chmod(0)
    assert unprivileged(f"load_profile(Path({str(path)!r}))") == f"{path}: cannot read (Permission denied)"
