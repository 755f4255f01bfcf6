"""The C++ cores outside ONNX Runtime: natively, and cross-compiled for aarch64 under qemu (NEON path)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kernel_cases import all_cases, cpu_flags, prefill_here, write_case
from qwdeploy.kernels.build import Build, build
from qwdeploy.kernels.reference import Prefill
from qwdeploy.kernels.targets import resolve_target

QEMU = "qemu-aarch64"
AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu")
PROFILES = Path(__file__).resolve().parents[2] / "profiles"


@pytest.fixture(scope="module")
def cases_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Prefill], list[str]]:
    """The case folders with the outputs of a build whose prefill path is the one asked for, each set written
    once."""
    written: dict[Prefill, list[str]] = {}

    def dirs(prefill: Prefill) -> list[str]:
        if prefill not in written:
            root = tmp_path_factory.mktemp(f"kernel-cases-{prefill.value}")
            written[prefill] = [str(write_case(case, root / case.name, prefill)) for case in all_cases(seed=1)]
        return written[prefill]

    return dirs


@pytest.fixture(scope="module")
def case_dirs(cases_for: Callable[[Prefill], list[str]]) -> list[str]:
    """For builds without AVX-512 VNNI: every one but this machine's own x86 build."""
    return cases_for(Prefill.ROWS)


def _check(output: str, returncode: int, isa: str, count: int) -> None:
    assert returncode == 0, output
    lines = output.splitlines()
    assert lines[0] == f"isa {isa}"
    assert sum(line.startswith("PASS") for line in lines) == count, output


def test_native_driver(host_build: Build, cases_for: Callable[[Prefill], list[str]]):
    case_dirs = cases_for(prefill_here())
    run = subprocess.run([str(host_build.test_driver), *case_dirs], capture_output=True, text=True, timeout=120)
    isa = run.stdout.splitlines()[0].split()[1]
    assert isa in ("avx512", "avx2", "scalar")
    _check(run.stdout, run.returncode, isa, len(case_dirs))


def test_aarch64_driver_under_qemu(aarch64_build: Build, case_dirs: list[str]):
    assert shutil.which(QEMU) and AARCH64_SYSROOT.is_dir(), (
        f"{QEMU} or {AARCH64_SYSROOT} missing: run scripts/install-system-deps.sh")
    run = subprocess.run([QEMU, "-L", str(AARCH64_SYSROOT), str(aarch64_build.test_driver), *case_dirs],
                         capture_output=True, text=True, timeout=300)
    _check(run.stdout, run.returncode, "neon", len(case_dirs))


# CPUs this machine's own build never exercises: each compiled for its ISA (a throwaway profile) and run here,
# natively or under qemu, so every integer dot-product path (kernels/cpu/int8_dot.h) meets the reference.
OTHER_ISAS = {  # name: (shipped profile it varies, its ISA list, simd.h's path, int8_dot.h's path)
    "x86-avx2": ("x86-server", '["sse4_2", "avx2", "fma"]', "avx2", "avx2"),
    "x86-baseline": ("x86-server", "[]", "scalar", "scalar"),
    "arm-no-dotprod": ("rpi5", '["neon"]', "neon", "neon"),
}


@pytest.mark.parametrize("name", OTHER_ISAS)
def test_other_isas_match_the_reference(name: str, case_dirs: list[str], tmp_path: Path):
    base, isa, simd, int8 = OTHER_ISAS[name]
    profile = tmp_path / f"{name}.toml"
    profile.write_text(re.sub(r"(?m)^isa = .*$", f"isa = {isa}", (PROFILES / f"{base}.toml").read_text()))
    target = resolve_target(str(profile))
    driver = build(target, jobs=2).test_driver
    command = [str(driver)] if target.arch == "x86_64" else [QEMU, "-L", str(AARCH64_SYSROOT), str(driver)]
    run = subprocess.run([*command, *case_dirs], capture_output=True, text=True, timeout=600)
    _check(run.stdout, run.returncode, simd, len(case_dirs))
    assert run.stdout.splitlines()[1] == f"int8 {int8}"


def test_aarch64_library_is_arm(aarch64_build: Build):
    header = aarch64_build.library.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def test_an_rpi5_bundle_carries_the_library_checked_under_qemu(aarch64_build: Build, case_dirs: list[str],
                                                               make_checkpoint, tmp_path):
    """The library a Raspberry Pi bundle ships is byte for byte the aarch64 build whose kernels pass here."""
    from qwdeploy.exporters.onnx.exporter import export
    from qwdeploy.exporters.request import ExportRequest
    from qwdeploy.toolkit.bundle.package import package
    from qwdeploy.toolkit.checkpoint import open_checkpoint
    from qwdeploy.toolkit.profiles import load_profile

    rpi5 = load_profile("rpi5")
    export(ExportRequest(open_checkpoint(make_checkpoint("qwen3")), tmp_path / "onnx", target="cpu", quant="int4",
                         profile=rpi5, show_progress=False, verify=False, options={"custom_ops": "on"}))
    package(tmp_path / "onnx", rpi5, tmp_path / "bundle")
    shipped = tmp_path / "bundle" / "model" / aarch64_build.library.name
    assert shipped.read_bytes() == aarch64_build.library.read_bytes()
    run = subprocess.run([QEMU, "-L", str(AARCH64_SYSROOT), str(aarch64_build.test_driver), *case_dirs],
                         capture_output=True, text=True, timeout=300)
    _check(run.stdout, run.returncode, "neon", len(case_dirs))


@pytest.mark.parametrize("amx", ["default", "declined"])
def test_prefill_takes_amx_tiles_exactly_where_the_cpu_has_them(host_build: Build,
                                                                cases_for: Callable[[Prefill], list[str]], amx: str):
    """The AVX-512 build prefills on AMX tiles where /proc/cpuinfo lists amx_bf16 and on VNNI elsewhere, or
    when QWDEPLOY_AMX=0 declines them; each path meets its own reference."""
    env = {**os.environ, "QWDEPLOY_AMX": "0" if amx == "declined" else "1"}
    prefill = prefill_here(env=env)
    dirs = cases_for(prefill)
    run = subprocess.run([str(host_build.test_driver), *dirs], capture_output=True, text=True, timeout=120, env=env)
    isa = run.stdout.splitlines()[0].split()[1]
    _check(run.stdout, run.returncode, isa, len(dirs))
    line = run.stdout.splitlines()[1]
    assert line.endswith("amx bf16 prefill") == (prefill is Prefill.TILES), line


def test_amx_prefill_meets_its_reference_on_emulated_tiles(host_build: Build,
                                                           cases_for: Callable[[Prefill], list[str]]):
    """amx.cc's tile path (layouts, partial tiles, K slices, both threads) with the tile instructions run in C++
    (kernels/cpu/amx_emulation.h): checked on every CPU with AVX512-BF16, not only on those with AMX."""
    probe = subprocess.run([str(host_build.test_driver)], capture_output=True, text=True, timeout=60)
    if probe.stdout.splitlines()[0] != "isa avx512" or "avx512_bf16" not in cpu_flags():
        pytest.skip("the AMX path's weight conversion needs an AVX-512 build on a CPU with AVX512-BF16")
    env = {**os.environ, "QWDEPLOY_AMX": "1"}
    tile_case_dirs = cases_for(Prefill.TILES)
    run = subprocess.run([str(host_build.amx_emulated_driver), *tile_case_dirs], capture_output=True, text=True,
                         timeout=300, env=env)
    _check(run.stdout, run.returncode, "avx512", len(tile_case_dirs))
    assert run.stdout.splitlines()[1].endswith("amx bf16 prefill"), run.stdout.splitlines()[1]
