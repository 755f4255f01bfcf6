"""What qwdeploy writes and keeps: the files of an artifact, the backend manifest's schema, how an
artifact is recognised, and the cache root.

Every module reads these from here, so a folder is recognised (and its manifest read) the same way
everywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ArtifactError, QwdeployError
from .files import exact_keys, read_json_object

MODEL_FILE = "model.onnx"
DATA_FILE = MODEL_FILE + ".data"  # the external weights beside the graph
GENAI_CONFIG = "genai_config.json"  # onnxruntime-genai's runtime config
GENERATION_CONFIG = "generation_config.json"  # copied from the checkpoint
BACKEND_MANIFEST = "qwdeploy_backend.json"  # what a device backend did (passes, options, library)
CHECKSUMS_FILE = "checksums.sha256"  # sha256sum format, every other file of the folder
PROVIDER_OPTIONS = "provider_options.json"  # execution provider → the ONNX Runtime session options it runs with
CHECKPOINT_CONFIG = "config.json"  # a Hugging Face checkpoint's
GGUF_MAGIC = b"GGUF"

CACHE_ENV = "QWDEPLOY_CACHE"


def cache_root() -> Path:
    """$QWDEPLOY_CACHE, else $XDG_CACHE_HOME/qwdeploy, else ~/.cache/qwdeploy: built kernels, fetched
    headers, the converted tokenizer and the measured memory bandwidth all live below it."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qwdeploy"


def artifact_kind(path: Path) -> str:
    """"onnx" (a folder with model.onnx), "gguf" (a GGUF file) or "hf" (a safetensors checkpoint folder)."""
    path = Path(path)
    if not path.exists():
        raise QwdeployError("no such file or directory", path)
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) == GGUF_MAGIC:
                return "gguf"
    elif (path / MODEL_FILE).is_file():
        return "onnx"
    elif (path / CHECKPOINT_CONFIG).is_file() and any(path.glob("*.safetensors")):
        return "hf"
    raise QwdeployError("not an artifact qwdeploy knows: expected an ONNX folder (model.onnx), a GGUF file, "
                        "or a Hugging Face checkpoint folder (config.json + *.safetensors)", path)


@dataclass(frozen=True)
class CustomOpsRecord:
    requested: str  # -O custom_ops as given: on, off, auto
    emitted: bool  # whether the graph holds qwdeploy-domain ops
    why: str  # how the request was decided
    domain: str
    library: str | None  # the kernel library's path relative to the artifact folder
    target: str | None  # what the library was built for (BuildTarget.describe())

    def runs_on(self, arch: str) -> bool:
        """Built for the machine that exported it ("host (...)") or portable to any CPU of `arch`
        ("portable (arch, ...)"), not for a device profile's CPU."""
        target = self.target or ""
        return target.startswith("host (") or target.startswith(f"portable ({arch},")


@dataclass(frozen=True)
class PassRecord:
    phase: str
    name: str
    count: int


@dataclass(frozen=True)
class BackendManifest:
    """BACKEND_MANIFEST: read exactly (a missing or unknown key is an error), written whole."""

    backend: str
    quant: str
    options: dict[str, Any]
    custom_ops: CustomOpsRecord
    nodes_per_layer: dict[str, int]
    graph_check: str
    passes: tuple[PassRecord, ...]

    def write(self, folder: Path) -> None:
        (folder / BACKEND_MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> BackendManifest | None:
        """None when the folder has no manifest (a portable graph)."""
        path = folder / BACKEND_MANIFEST
        if not path.exists():
            return None
        data = read_json_object(path, BACKEND_MANIFEST, ArtifactError)
        custom, passes = exact_keys(cls, data, path)["custom_ops"], data["passes"]
        if not isinstance(custom, dict) or not isinstance(passes, list) or not all(isinstance(p, dict) for p in passes):
            raise ArtifactError("'custom_ops' must be an object and 'passes' a list of objects", path)
        library = exact_keys(CustomOpsRecord, custom, path)["library"]
        if library is not None and (not isinstance(library, str) or Path(library).is_absolute()
                                    or ".." in Path(library).parts):
            raise ArtifactError(f"custom_ops.library {library!r} must be a file name inside the artifact folder", path)
        return cls(**{**data, "custom_ops": CustomOpsRecord(**custom),
                      "passes": tuple(PassRecord(**exact_keys(PassRecord, p, path)) for p in passes)})

