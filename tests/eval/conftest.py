"""One Qwen3 tiny checkpoint, its artifacts of every kind eval reads (a damaged one among them), built once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from eval_cases import ARCH, DAMAGED_TENSOR, STATIC_CONTEXT, export


@pytest.fixture(scope="session")
def checkpoint(make_checkpoint) -> Path:
    return make_checkpoint(ARCH)


def _damaged_checkpoint(checkpoint: Path, out: Path) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint, out)
    (weights,) = out.glob("*.safetensors")
    tensors = load_file(weights)
    tensors[DAMAGED_TENSOR].zero_()
    save_file(tensors, weights, metadata={"format": "pt"})
    return out


@pytest.fixture(scope="session")
def artifacts(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """artifacts(name) → path, exported on first use: gguf_f32, onnx_f32, cann_static (f16, static KV of
    STATIC_CONTEXT), damaged.gguf (f32 of the checkpoint with DAMAGED_TENSOR zeroed)."""
    from qwdeploy.toolkit.profiles import load_profile

    root, built = tmp_path_factory.mktemp("eval-artifacts"), {}
    recipes = {
        "gguf_f32": lambda: export(checkpoint, root / "f32.gguf", "gguf", "f32"),
        "onnx_f32": lambda: export(checkpoint, root / "onnx-f32", "onnx", "f32"),
        "cann_static": lambda: export(checkpoint, root / "cann-static", "onnx", None, target="cann",
                                       profile=load_profile("ascend-910b"),
                                       options={"context": str(STATIC_CONTEXT), "gears": "1,16"}),
        "damaged": lambda: export(_damaged_checkpoint(checkpoint, root / "damaged-checkpoint"),
                                   root / "damaged.gguf", "gguf", "f32"),
    }

    def get(name: str) -> Path:
        if name not in built:
            built[name] = recipes[name]()
        return built[name]

    return get


@pytest.fixture(scope="session")
def profile_json(artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `qwdeploy profile` document of the f32 GGUF (a short in-process run)."""
    from qwdeploy.toolkit.profiler.api import profile
    from qwdeploy.toolkit.profiler.runner import Settings

    docs, _ = profile([artifacts("gguf_f32")], settings=Settings(prompt_len=8, gen=3, runs=1), isolate=False,
                      progress=False, roofline=False)
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    path.write_text(json.dumps(docs[0]))
    return path
