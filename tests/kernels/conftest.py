"""Kernel builds shared by the whole session: each target compiles once (and is reused from
qwdeploy's cache while the sources are unchanged)."""

from __future__ import annotations

import pytest

from qwdeploy.kernels.build import Build, build
from qwdeploy.kernels.targets import resolve_target
from qwdeploy.toolkit.errors import MissingDependencyError


def _build_or_skip(target: str, cuda_arch: str | None = None) -> Build:
    try:
        return build(resolve_target(target, cuda_arch), jobs=2)
    except MissingDependencyError as exc:
        pytest.skip(f"cannot build kernels for {target}: {exc}")


@pytest.fixture(scope="session")
def host_build() -> Build:
    return _build_or_skip("host")


@pytest.fixture(scope="session")
def aarch64_build() -> Build:
    return _build_or_skip("rpi5")


@pytest.fixture(scope="session")
def cuda_build() -> Build:
    return _build_or_skip("host", "sm_87,sm_90")
