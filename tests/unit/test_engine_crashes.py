"""A native engine that crashes, raises or exits inside run_isolated becomes one EngineError line."""

import ctypes
import os
import signal
from pathlib import Path

import pytest

from qwdeploy.toolkit.runtimes.llamacpp.native import amx_repack_crashes, cpu_flags
from qwdeploy.toolkit.engines import run_isolated
from qwdeploy.toolkit.errors import EngineError, QwdeployError

ARTIFACT = Path("/artifacts/model-q4_0.gguf")


def _segfault() -> None:
    ctypes.string_at(0)  # a read of address 0: SIGSEGV, as a faulting C kernel would


def _abort() -> None:
    os.kill(os.getpid(), signal.SIGABRT)


def _exit_silently() -> None:
    os._exit(3)


def _raises() -> None:
    raise ValueError("tensor blk.0.attn_q.weight has 7 dims\nsecond line")


def _user_error() -> None:
    raise QwdeployError("llama.cpp could not load this GGUF file", ARTIFACT)


def _double(values: list[float]) -> list[float]:
    return [2 * v for v in values]


def _isolated(fn, *args):
    return run_isolated("llama.cpp", ARTIFACT, "evaluating model-q4_0.gguf", "pass --no-verify", fn, *args)


@pytest.mark.parametrize(("fn", "signal_name"), [(_segfault, "SIGSEGV"), (_abort, "SIGABRT")])
def test_a_signal_in_the_engine_names_engine_signal_artifact_and_advice(fn, signal_name):
    with pytest.raises(EngineError) as caught:
        _isolated(fn)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(ARTIFACT))
    assert f"llama.cpp crashed with {signal_name} while evaluating model-q4_0.gguf; pass --no-verify" in message


def test_an_engine_that_exits_without_answering_is_reported():
    with pytest.raises(EngineError, match="exited with status 3 without an answer"):
        _isolated(_exit_silently)


def test_an_unexpected_exception_in_the_engine_is_one_line():
    with pytest.raises(EngineError) as caught:
        _isolated(_raises)
    assert str(caught.value).endswith("llama.cpp failed while evaluating model-q4_0.gguf: "
                                      "ValueError: tensor blk.0.attn_q.weight has 7 dims")


def test_a_user_error_in_the_child_stays_a_user_error():
    with pytest.raises(QwdeployError, match="could not load this GGUF file") as caught:
        _isolated(_user_error)
    assert not isinstance(caught.value, EngineError)


def test_a_result_crosses_back_from_the_child():
    assert _isolated(_double, [1.5, -2.0, 3.25]) == [3.0, -4.0, 6.5]


@pytest.mark.parametrize(("flags", "info", "expected"), [
    ({"avx512f", "amx_tile", "amx_int8", "amx_bf16"}, "CPU : AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |", True),
    ({"avx512f", "amx_tile", "amx_int8"}, "CPU : AVX512 = 1 | REPACK = 1 |", False),  # built without AMX
    ({"avx512f", "avx512_vnni"}, "CPU : AVX512 = 1 | AMX_INT8 = 1 |", False),  # AMD Zen4: no AMX
])
def test_the_amx_workaround_applies_only_to_an_amx_build_on_an_amx_cpu(flags, info, expected):
    assert amx_repack_crashes(frozenset(flags), info) is expected


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_tile amx_int8\nbugs\t\t: none\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "amx_tile", "amx_int8"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_a_profiling_child_that_dies_is_one_line(make_checkpoint, tmp_path):
    """A real profiling child on a real GGUF, killed the way a faulting kernel dies."""
    import numpy as np
    from click.testing import CliRunner

    from qwdeploy.toolkit.cli.main import cli
    from qwdeploy.toolkit.profiler.worker import ChildWorker, Job

    gguf = tmp_path / "m.gguf"
    assert CliRunner().invoke(cli, ["export", str(make_checkpoint("qwen2")), "--format", "gguf", "-o", str(gguf),
                                    "--no-verify"]).exit_code == 0
    worker = ChildWorker(Job(gguf, "gguf", "cpu", threads=1))
    try:
        os.kill(worker._process.pid, signal.SIGSEGV)
        with pytest.raises(EngineError) as caught:
            worker.call("run", np.array([[11, 22, 33]]), 2)
    finally:
        worker.close()
    assert str(caught.value) == (f"{gguf}: llama.cpp crashed with SIGSEGV while running m.gguf; "
                                 "profile it with another runtime, or report this engine fault")
