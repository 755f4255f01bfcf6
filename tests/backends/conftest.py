"""Fixtures for the backend suite: portable and backend exports of the tiny checkpoints, cached per session,
and a decoder that runs an exported folder step by step with its KV cache."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

ort = pytest.importorskip("onnxruntime")

from qwdeploy.exporters.onnx.exporter import export  # noqa: E402
from qwdeploy.exporters.request import ExportRequest  # noqa: E402
from qwdeploy.toolkit.checkpoint import open_checkpoint  # noqa: E402

Exported = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def kernel_library_built() -> None:
    """Build the host kernel library first (cached by source hash), so the tests that run graphs with
    our ops run them instead of skipping on a machine where tests/kernels has not built it yet."""
    from qwdeploy.kernels import library_path
    from qwdeploy.toolkit.errors import MissingDependencyError

    try:
        library_path("host", build_if_missing=True)
    except MissingDependencyError:
        pass  # no compiler or headers here: those tests skip with their own reason; a failed build fails


@pytest.fixture(scope="session")
def exported(make_checkpoint, tmp_path_factory) -> Exported:
    """exported(arch, target=None, quant=None, **options) → folder, built once per session."""
    done: dict[tuple, Path] = {}

    def get(arch: str, target: str | None = None, quant: str | None = None, **options) -> Path:
        key = (arch, target, quant, tuple(sorted(options.items())))
        if key not in done:
            name = "-".join(str(k) for k in key[:3]) + "".join(f"-{k}{v}" for k, v in key[3])
            out = tmp_path_factory.mktemp("backends") / name
            export(ExportRequest(open_checkpoint(make_checkpoint(arch)), out, quant=quant, target=target,
                                 show_progress=False, options=dict(options)))
            done[key] = out
        return done[key]

    return get
