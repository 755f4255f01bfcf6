"""Two tiny checkpoints and one local sweep over them, built once however many test workers share the run.

The sweep: qwen2 and qwen3 × GGUF f16, q8_0, q4_0 × rpi5, x86-server and tiny-board (a test profile too small
for anything, whose cells are all skipped). Settings are the smallest that still measure something.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from qwdeploy.toolkit.atomic import build_once

from sweep_cases import ARCHS, Swept, run_sweep, write_plan


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray_cluster: starts a two-node Ray cluster on this machine (runs by default)")


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this run sees (each worker's own base temp is a child of its parent)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "sweep-shared"


@pytest.fixture(scope="session")
def checkpoints(make_checkpoint, shared_root: Path) -> Path:
    """A folder holding qwen2/ and qwen3/ (read-only: tests that change one copy it first)."""
    folder = shared_root / "checkpoints"

    def make(staging: Path) -> None:
        for arch in ARCHS:
            shutil.copytree(make_checkpoint(arch), staging / arch)

    build_once(folder, lambda: all((folder / a / "config.json").is_file() for a in ARCHS), False, make)
    return folder


@pytest.fixture(scope="session")
def swept(checkpoints: Path, shared_root: Path) -> Swept:
    """The local sweep, run once: local/plan.toml (checkpoints as ../checkpoints/ARCH), its output in local/out."""
    folder = shared_root / "local"

    def make(staging: Path) -> None:
        plan = write_plan(staging, {arch: f"../checkpoints/{arch}" for arch in ARCHS})
        run = run_sweep(plan, staging / "out")
        (staging / "output.txt").write_text(run.output)

    build_once(folder, lambda: (folder / "output.txt").is_file(), False, make)
    doc = json.loads((folder / "out" / "sweep.json").read_text())
    return Swept(folder / "plan.toml", folder / "out", (folder / "output.txt").read_text(), doc)
