"""A bundle's manifest.json: what it holds (every file's size and sha256), what it is for, what it needs.

Read exactly: an unknown or missing key is an error, so a bundle from another qwdeploy version says so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..files import exact_keys, read_json_object

MANIFEST = "manifest.json"
FORMAT = "qwdeploy.bundle"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the bundle folder, "/"-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class MemoryPlan:
    """What the model needs on the device against what the profile allows, in bytes."""

    weights: int
    kv_cache: int  # at `context` tokens, one sequence
    context: int
    runtime_overhead: int  # an estimate: compute buffers and the runtime itself
    budget: int
    budget_source: str

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.runtime_overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.budget


@dataclass(frozen=True)
class Runtime:
    name: str  # the package the device needs
    requirement: str  # a version range in pip's syntax
    tested_with: str | None  # the version installed where the bundle was made


@dataclass(frozen=True)
class Reference:
    """Greedy tokens the bundle's model generated when it was packaged, for `verify --run` to compare."""

    prompt: list[int]
    tokens: list[int]


@dataclass(frozen=True)
class BundleManifest:
    format: str
    format_version: int
    toolkit_version: str
    profile: str
    artifact_kind: str  # gguf | onnx
    model: str  # the model file or folder inside the bundle
    source: dict[str, Any] | None  # the checkpoint it was exported from, when packaging exported it
    export: dict[str, Any]  # what the artifact says about how it was made
    runtime: Runtime
    memory: MemoryPlan
    reference: Reference | None  # None where this machine cannot run the model (a foreign kernel library)
    files: tuple[FileEntry, ...]

    def write(self, folder: Path) -> None:
        data = asdict(self)
        (folder / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> BundleManifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise ArtifactError(f"no {MANIFEST}: not a qwdeploy bundle", folder)
        data = exact_keys(cls, read_json_object(path, MANIFEST, ArtifactError), path)
        if (data["format"], data["format_version"]) != (FORMAT, FORMAT_VERSION):
            raise ArtifactError(f"format {data['format']!r} version {data['format_version']!r}; this qwdeploy reads "
                                f"{FORMAT} version {FORMAT_VERSION}", path)
        try:
            return cls(**{**data, "runtime": Runtime(**exact_keys(Runtime, data["runtime"], path)),
                          "memory": MemoryPlan(**exact_keys(MemoryPlan, data["memory"], path)),
                          "reference": Reference(**exact_keys(Reference, data["reference"], path))
                          if data["reference"] is not None else None,
                          "files": tuple(FileEntry(**exact_keys(FileEntry, f, path)) for f in data["files"])})
        except TypeError:
            raise ArtifactError("'runtime', 'memory' and each of 'files' must be objects", path) from None

