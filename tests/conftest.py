"""Shared fixtures: tiny real Qwen checkpoints of every architecture, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from qwdeploy.toolkit.demo import ARCHS, build_demo_checkpoint

CheckpointFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> CheckpointFactory:
    """make_checkpoint(arch, size="tiny", dtype="bfloat16", seed=0, max_shard_bytes=...) → cached dir."""
    built: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("checkpoints")

    def make(arch: str, size: str = "tiny", dtype: str = "bfloat16", seed: int = 0, **kwargs) -> Path:
        key = (arch, size, dtype, seed, tuple(sorted(kwargs.items())))
        if key not in built:
            name = "-".join(str(k) for k in key[:4]) + "".join(f"-{k}{v}" for k, v in key[4])
            built[key] = build_demo_checkpoint(root / name, arch, size, dtype, seed, **kwargs)
        return built[key]

    return make


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny(make_checkpoint: CheckpointFactory, arch: str) -> Path:
    """The tiny checkpoint of the parametrised architecture (shared, read-only)."""
    return make_checkpoint(arch)


@pytest.fixture
def tiny_copy(tiny: Path, tmp_path: Path) -> Path:
    """A private copy a test may damage."""
    return Path(shutil.copytree(tiny, tmp_path / tiny.name))


@pytest.fixture(scope="session")
def kernel_library() -> Path:
    """The host build of qwdeploy's kernel library, built once (or found in the cache). A missing compiler
    or a failed build fails the tests that need it: scripts/install-system-deps.sh provides the tools."""
    from qwdeploy.kernels import library_path

    return Path(library_path("host", build_if_missing=True))
