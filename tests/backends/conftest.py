"""Fixtures for the backend suite: portable and backend exports of the tiny checkpoints, cached per session,
and a decoder that runs an exported folder step by step with its KV cache."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import onnxruntime as ort

from qwdeploy.exporters.onnx.exporter import export  # noqa: E402
from qwdeploy.exporters.request import ExportRequest  # noqa: E402
from qwdeploy.toolkit.checkpoint import open_checkpoint  # noqa: E402
from qwdeploy.toolkit.profiles import load_profile

Exported = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def kernel_library_built(kernel_library) -> None:
    """Built before any export, so `custom_ops=on` artifacts record the library in their manifest."""


@pytest.fixture(scope="session")
def exported(make_checkpoint, tmp_path_factory) -> Exported:
    """exported(arch, target=None, quant=None, profile=None, **options) → folder, built once per session.
    Not verified against transformers on the way: the backend tests check each graph's numbers themselves."""
    done: dict[tuple, Path] = {}

    def get(arch: str, target: str | None = None, quant: str | None = None, profile: str | None = None,
            **options) -> Path:
        key = (arch, target, quant, profile, tuple(sorted(options.items())))
        if key not in done:
            name = "-".join(str(k) for k in key[:4]) + "".join(f"-{k}{v}" for k, v in key[4])
            out = tmp_path_factory.mktemp("backends") / name
            export(ExportRequest(open_checkpoint(make_checkpoint(arch)), out, quant=quant, target=target,
                                 profile=load_profile(profile) if profile else None, show_progress=False,
                                 verify=False, options=dict(options)))
            done[key] = out
        return done[key]

    return get
