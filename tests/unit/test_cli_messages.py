"""Options are checked before any long work, and every refusal (ours or click's) is one line that says
what exists or what to do instead."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli


def _run(*args: object):
    return CliRunner().invoke(cli, list(map(str, args)))


def _one_line(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def gguf_file(make_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "m.gguf"
    assert _run("export", make_checkpoint("qwen2"), "--format", "gguf", "-o", out, "--no-verify").exit_code == 0
    return out


@pytest.mark.parametrize(("flags", "message"), [
    (("--threads", "-3"), "'--threads': -3 is not in the range x>=1"),
    (("--usd-per-hour", "-5"), "'--usd-per-hour': -5.0 is not in the range x>0"),
    (("--usd-per-hour", "nan"), "'--usd-per-hour': nan is not a finite number"),
    (("--runs", "0"), "'--runs': 0 is not in the range x>=1"),
    (("--gen", "1"), "'--gen': 1 is not in the range x>=2"),
    (("--prompt-len", "0"), "'--prompt-len': 0 is not in the range x>=1"),
])
def test_profile_run_options_are_refused_before_anything_loads(gguf_file, flags, message):
    result = _run("profile", gguf_file, *flags)
    _one_line(result, 2, message)
    assert "(see 'qwdeploy profile --help')" in result.stderr
    assert "loading" not in result.output  # no progress bar: nothing started


def test_the_ascend_target_needs_an_ascend_profile_before_any_work(make_checkpoint, tmp_path):
    result = _run("export", make_checkpoint("qwen2"), "--format", "onnx", "--target", "cann", "-o", tmp_path / "o")
    _one_line(result, 1, "--target cann compiles for one Ascend SoC: add --profile ascend-310p")
    result = _run("export", make_checkpoint("qwen2"), "--format", "onnx", "--target", "cann", "--profile", "rpi5",
                  "-o", tmp_path / "o")
    _one_line(result, 1, "--target cann compiles for one Ascend SoC")
    assert not (tmp_path / "o").exists()


def test_integer_onnx_weights_without_a_target_name_the_targets(make_checkpoint, tmp_path):
    result = _run("export", make_checkpoint("qwen2"), "--format", "onnx", "--quant", "int4", "-o", tmp_path / "o")
    _one_line(result, 1, "add --target (cpu or cuda)")


@pytest.mark.parametrize("option", ["block_size=64", "method=rtn", "keep=embed", "symmetric=false"])
def test_block_options_on_a_float_build_are_refused(make_checkpoint, tmp_path, option):
    result = _run("export", make_checkpoint("qwen2"), "--format", "onnx", "--target", "cpu", "--quant", "fp32",
                  "-O", option, "-o", tmp_path / "o")
    _one_line(result, 1, f"-O {option.split('=')[0]} applies to --quant int4/int8; --quant f32 has no weights")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("option", "message"), [("block_size=7", "block_size"), ("keep=everything", "keep")])
def test_bad_block_options_fail_before_the_portable_graph_is_written(make_checkpoint, tmp_path, monkeypatch,
                                                                      option, message):
    from qwdeploy.exporters.onnx import exporter

    monkeypatch.setattr(exporter, "write_onnx", lambda *a, **k: pytest.fail("the portable export started"))
    result = _run("export", make_checkpoint("qwen2"), "--format", "onnx", "--target", "cpu", "--quant", "int4",
                  "-O", option, "-o", tmp_path / "o")
    _one_line(result, 1, message)


def test_a_bogus_ort_include_is_refused_even_when_a_build_is_cached(tmp_path, kernel_library):
    result = _run("kernels", "build", "--ort-include", tmp_path)
    _one_line(result, 3, "--ort-include points at a folder without onnxruntime_cxx_api.h")


@pytest.mark.parametrize(("args", "message"), [
    (("export",), "Missing argument 'MODEL'. (see 'qwdeploy export --help')"),
    (("export", ".", "--bogus"), "No such option '--bogus'"),
    (("nosuch",), "No such command 'nosuch'. (see 'qwdeploy --help')"),
    (("demo-checkpoint", "x", "--max-shard-size", "0"), "'--max-shard-size': 0 is not in the range x>=1"),
])
def test_usage_errors_are_one_line(args, message):
    _one_line(_run(*args), 2, message)
