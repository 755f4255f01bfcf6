"""Kernel builds shared by the whole session: each target compiles once (and is reused from
qwdeploy's cache while the sources are unchanged)."""

from __future__ import annotations

import pytest

from qwdeploy.kernels.build import Build, build
from qwdeploy.kernels.targets import resolve_target


def _build(target: str, cuda_arch: str | None = None) -> Build:
    """A missing compiler fails with what to install (scripts/install-system-deps.sh provides it)."""
    return build(resolve_target(target, cuda_arch), jobs=2)


@pytest.fixture(scope="session")
def host_build() -> Build:
    return _build("host")


@pytest.fixture(scope="session")
def portable_build() -> Build:
    return _build("portable")


@pytest.fixture(scope="session")
def aarch64_build() -> Build:
    return _build("rpi5")


@pytest.fixture(scope="session")
def cuda_build() -> Build:
    return _build("host", "sm_87,sm_90")
