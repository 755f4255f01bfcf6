"""The build driver and `qwdeploy kernels`: targets, cache hits, and what a missing tool says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwdeploy.kernels import build as build_module
from qwdeploy.kernels.build import Build, build, planned
from qwdeploy.kernels.ort_headers import ort_include
from qwdeploy.kernels.targets import parse_cuda_archs, resolve_target
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import MissingDependencyError, QwdeployError


def test_targets_from_profiles():
    rpi = resolve_target("rpi5")
    assert (rpi.arch, rpi.cross, rpi.cpu_flags) == ("aarch64", True, ("-march=armv8.2-a+fp16+dotprod",))
    h100 = resolve_target("h100")
    assert h100.cuda_archs == ("90",) and "-mavx2" in h100.cpu_flags and not h100.cross
    assert resolve_target("host", "sm_87, sm_90").cuda_archs == ("87", "90")
    assert "left out" in resolve_target("jetson-orin-nano").note


def test_bad_cuda_arch_and_unknown_profile_are_refused():
    with pytest.raises(QwdeployError, match="bad CUDA architecture 'ampere'"):
        parse_cuda_archs("sm_87,ampere")
    with pytest.raises(QwdeployError, match="unknown profile"):
        resolve_target("no-such-board")


def test_second_build_is_a_cache_hit(host_build: Build, monkeypatch):
    def no_cmake(*_):
        raise AssertionError("a cached build ran cmake again")

    monkeypatch.setattr(build_module, "_cmake", no_cmake)
    assert build(resolve_target("host")).directory == host_build.directory


def test_cache_key_follows_target():
    assert planned(resolve_target("host")).directory != planned(resolve_target("host", "sm_90")).directory


def test_missing_compiler_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    real = shutil.which
    monkeypatch.setattr(build_module.shutil, "which", lambda tool: None if "aarch64" in tool else real(tool))
    with pytest.raises(MissingDependencyError, match="apt-get install g\\+\\+-aarch64-linux-gnu"):
        build(resolve_target("rpi5"))


def test_missing_cmake_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    real = shutil.which
    monkeypatch.setattr(build_module.shutil, "which", lambda tool: None if tool == "cmake" else real(tool))
    with pytest.raises(MissingDependencyError, match="install it: apt-get install cmake"):
        build(resolve_target("host"))


def test_ort_include_must_hold_the_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(MissingDependencyError, match="without onnxruntime_cxx_api.h"):
        ort_include(tmp_path)
    monkeypatch.setenv("QWDEPLOY_ORT_INCLUDE", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="QWDEPLOY_ORT_INCLUDE points at a folder"):
        ort_include()
    (tmp_path / "onnxruntime_cxx_api.h").write_text("")
    assert ort_include() == tmp_path


def test_cli_build_prints_the_library_and_list_shows_it(host_build: Build):
    runner = CliRunner()
    result = runner.invoke(cli, ["kernels", "build", "--target", "host"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(host_build.library)
    listed = runner.invoke(cli, ["kernels", "list"])
    assert listed.exit_code == 0, listed.output
    assert "QKNormRotary" in listed.output and f"current  {host_build.library}" in listed.output


def test_library_path_api(host_build: Build):
    from qwdeploy.kernels import library_path

    assert library_path(target="host") == host_build.library


def test_library_path_names_the_command_when_unbuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from qwdeploy.kernels import library_path

    monkeypatch.setenv("QWDEPLOY_CACHE", str(tmp_path))
    with pytest.raises(QwdeployError, match="run `qwdeploy kernels build --target host`"):
        library_path(target="host")


def test_a_failed_or_stalled_header_fetch_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An export asks for the headers on its way: a failing or hanging apt/dpkg step must end as the fetch's
    MissingDependencyError (which the export turns into a fallback), never a traceback or a stuck export."""
    from qwdeploy.kernels import ort_headers

    with pytest.raises(MissingDependencyError, match=r"failed \(.*\); pass --ort-include"):
        ort_headers._step(["sh", "-c", "echo broken mirror >&2; exit 100"], tmp_path)
    monkeypatch.setattr(ort_headers, "FETCH_TIMEOUT_S", 0.2)
    with pytest.raises(MissingDependencyError, match="sleep took over 0.2 s"):
        ort_headers._step(["sleep", "5"], tmp_path)
