"""Ascend kernels (kernels/ascend/): each compiles for Ascend910B1 through HFusion → HIVM with bishengir-compile,
and the tiled IR of that same compile, lowered to x86, matches float64 numpy at shapes that reach every tiling key.

Skips only on a machine ascendnpu-ir publishes no wheel for (it ships x86-64 Linux builds); elsewhere a missing
ascendnpu-ir or LLVM 19 (README's set-up installs both) is a failure, not a skip. No device object is built here: that needs the CANN toolkit's hivmc. kernels/ascend/README.md says what this does and does not prove.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from qwdeploy.kernels import ascend_build, ascend_check
from qwdeploy.kernels.ascend_build import KERNELS, AscendBuild, Tools, ascend_soc, build, resolve
from qwdeploy.kernels.ascend_check import TOLERANCE, LoweredKernel, check, load, tiling_keys
from qwdeploy.kernels.ascend_x86 import llvm_tools
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import MissingDependencyError

PROFILE = "ascend-910b"


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _rotary_inputs(rng: np.random.Generator, tokens: int, heads: int, head_dim: int) -> dict[str, np.ndarray]:
    angles = rng.uniform(0.0, 2.0 * np.pi, (tokens, head_dim // 2))  # [tokens, head_dim/2]
    return {"x": _normal(rng, tokens, heads, head_dim), "cos": np.cos(angles).astype(np.float32),
            "sin": np.sin(angles).astype(np.float32)}


# Kernel → random inputs (never all zero) for one shape, keyed by the host entry's argument names.
INPUTS: dict[str, Callable[..., dict]] = {
    "rms_norm": lambda rng, rows, hidden: {"x": _normal(rng, rows, hidden, scale=2.0), "w": _normal(rng, hidden),
                                           "eps": 1e-6},
    "add_rms_norm": lambda rng, rows, hidden: {"x": _normal(rng, rows, hidden), "residual": _normal(rng, rows, hidden),
                                               "w": _normal(rng, hidden), "eps": 1e-5},
    "swiglu": lambda rng, rows, inter: {"gate_up": _normal(rng, rows, 2 * inter, scale=3.0)},
    "rotary": _rotary_inputs,
}
# Shapes for the tiling paths (the test asserts that every tiling key is reached): fewer rows than AI cores,
# sizes off the 8-float alignment and off the tile, rows of several tiles, rows longer than one tile (for the
# norms: the widest whole row, 4080 floats, and the narrowest split one).
SHAPES: dict[str, list[tuple[int, ...]]] = {
    "rms_norm": [(1, 8), (7, 13), (300, 128), (2, 4080), (2, 4081), (64, 4096), (5, 5000)],
    "add_rms_norm": [(1, 8), (7, 13), (300, 128), (2, 4080), (2, 4081), (64, 4096), (5, 5000)],
    "swiglu": [(1, 8), (7, 13), (16, 11008), (2, 30000)],
    "rotary": [(1, 1, 8), (5, 8, 16), (300, 4, 128), (17, 16, 128), (2, 40, 256)],
}


@pytest.fixture(scope="session")
def bishengir() -> Tools:
    if platform.machine() != "x86_64":
        pytest.skip(f"ascendnpu-ir publishes x86-64 Linux wheels only; this machine is {platform.machine()}")
    return ascend_build.tools()


@pytest.fixture(scope="session")
def ascend_910b(bishengir: Tools) -> AscendBuild:
    return build(resolve(PROFILE))


@pytest.fixture(scope="session")
def lowered(ascend_910b: AscendBuild, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], LoweredKernel]:
    """kernel → its x86 library, lowered on first use."""
    llvm_tools()  # README's set-up installs them (scripts/install-system-deps.sh): missing is a failure
    root = tmp_path_factory.mktemp("ascend-x86")
    return cache(lambda kernel: load(ascend_910b, kernel, root / kernel))


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_compiles_to_hivm_for_ascend910b1(kernel: str, ascend_910b: AscendBuild):
    assert ascend_910b.target.soc == "Ascend910B1"
    hivm = ascend_910b.hivm_ir(kernel).read_text()
    assert f"func.func @{kernel}(" in hivm  # the host entry, dispatching on the tiling key
    assert f"func.func @{kernel}_tiling_function(" in hivm
    for key in tiling_keys(ascend_910b, kernel):  # one device kernel per tiling key, on the AI cores' vector units
        assert f"func.func @{kernel}_0_{key}(" in hivm
    assert "hivm.func_core_type<AIV>" in hivm and f"hacc.block_dim = {ascend_910b.target.ai_cores}" in hivm
    assert "#hivm.address_space<ub>" in hivm and "hivm.hir.set_flag" in hivm  # memory planned, sync injected


@pytest.mark.parametrize("kernel", KERNELS)
def test_x86_lowering_matches_numpy_at_every_tiling_key(kernel: str, ascend_910b: AscendBuild,
                                                        lowered: Callable[[str], LoweredKernel]):
    rng = np.random.default_rng(12)
    results = [check(lowered(kernel), INPUTS[kernel](rng, *shape)) for shape in SHAPES[kernel]]
    failed = [f"{r.shapes}: key {r.tiling_key}, error {r.error:.2e}" for r in results if not r.passed]
    assert not failed, f"{kernel} beyond {TOLERANCE:.1e} of the largest output: {failed}"
    assert {r.tiling_key for r in results} == tiling_keys(ascend_910b, kernel)


def test_check_catches_a_kernel_that_computes_something_else(lowered: Callable[[str], LoweredKernel],
                                                             monkeypatch: pytest.MonkeyPatch):
    def rotated_the_other_way(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        return ascend_check.rotary(x, cos, -sin)

    monkeypatch.setitem(ascend_check.REFERENCES, "rotary", rotated_the_other_way)
    result = check(lowered("rotary"), _rotary_inputs(np.random.default_rng(3), 3, 2, 64))
    assert not result.passed and result.error > 0.1


def test_second_build_is_a_cache_hit(ascend_910b: AscendBuild, monkeypatch: pytest.MonkeyPatch):
    def no_compile(*_):
        raise AssertionError("a cached Ascend build ran bishengir-compile again")

    monkeypatch.setattr(ascend_build, "_compile", no_compile)
    assert build(resolve(PROFILE)).directory == ascend_910b.directory


def test_cli_builds_ascend_910b_to_hivm_and_says_what_is_missing(ascend_910b: AscendBuild):
    result = CliRunner().invoke(cli, ["kernels", "build", "--target", PROFILE])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(path) for path in ascend_910b.outputs()]
    if not ascend_910b.has_device_objects:
        assert ascend_build.HIVMC_NOTE in result.stderr


@pytest.mark.parametrize("profile, soc", [("ascend-310p", "Ascend310P3"), ("ascend-310b", "Ascend310B1")])
def test_310_profiles_are_refused_in_one_line(profile: str, soc: str, bishengir: Tools):
    result = CliRunner().invoke(cli, ["kernels", "build", "--target", profile])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{soc} is not a bishengir-compile target" in lines[0], result.stderr


def test_only_ascend_profiles_route_to_the_ascend_build():
    assert ascend_soc(PROFILE) == "Ascend910B1" and ascend_soc("ascend-310p") == "Ascend310P3"
    assert ascend_soc("host") is None and ascend_soc("rpi5") is None
    result = CliRunner().invoke(cli, ["kernels", "build", "--target", PROFILE, "--cuda-arch", "sm_90"])
    assert result.exit_code == 2 and "do not apply" in result.output


def test_missing_bishengir_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ascend_build.importlib.util, "find_spec", lambda _: None)
    monkeypatch.setattr(ascend_build.shutil, "which", lambda _: None)
    with pytest.raises(MissingDependencyError, match="pip install ascendnpu-ir"):
        ascend_build.tools()


def test_kernel_signatures_come_from_their_sources():
    assert ascend_check.signature("add_rms_norm") == ascend_check.Signature(
        (("x", 2), ("residual", 2), ("w", 1), ("eps", None)), 2)
    assert ascend_check.signature("rotary").inputs == (("x", 3), ("cos", 2), ("sin", 2))
    assert set(ascend_check.REFERENCES) == set(KERNELS) == {path.stem for path in
                                                            Path(ascend_build.SOURCE_DIR).glob("*.mlir")}
