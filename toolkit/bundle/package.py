"""`qwdeploy package`: an artifact, checked and sized for one device, as a folder the device can verify."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..atomic import atomic_directory
from ..checksums import file_sha256
from ..errors import QwdeployError
from ..layout import BACKEND_MANIFEST, BackendManifest, artifact_kind
from ..profiler.artifacts import preflight
from ..profiles import DeviceProfile
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, BundleManifest, FileEntry, MemoryPlan, Runtime
from .plan import describe, memory_plan

MODEL = {"gguf": "model.gguf", "onnx": "model"}  # where the artifact sits inside the bundle
README = "README.md"
MODELFILE = "Modelfile"  # what `ollama create NAME -f Modelfile` reads
# The package a device runs each artifact with, by kind and backend; versions below these lack what we use.
RUNTIMES = {("gguf", None): ("llama-cpp-python", ">=0.3"), ("onnx", None): ("onnxruntime", ">=1.20"),
            ("onnx", "cann"): ("onnxruntime-cann", ">=1.20")}
RUN = {"gguf": "llama-cli -m model.gguf -cnv   # or: ollama create qwen -f Modelfile && ollama run qwen",
       "onnx": "python -c \"import onnxruntime_genai as og; og.Model('model')\"   # or: qwdeploy run model"}


@dataclass(frozen=True)
class Packaged:
    path: Path
    manifest: BundleManifest
    integrity: str


def file_entries(folder: Path) -> tuple[FileEntry, ...]:
    return tuple(FileEntry(p.relative_to(folder).as_posix(), p.stat().st_size, file_sha256(p))
                 for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST)


def _backend(artifact: Path, kind: str) -> BackendManifest | None:
    return BackendManifest.read(artifact) if kind == "onnx" and (artifact / BACKEND_MANIFEST).is_file() else None


def _runtime(kind: str, backend: BackendManifest | None) -> Runtime:
    name, requirement = RUNTIMES[(kind, "cann" if backend and backend.backend == "cann" else None)]
    try:
        tested = metadata.version(name)
    except metadata.PackageNotFoundError:
        tested = None
    return Runtime(name, requirement, tested)


def _readme(profile: DeviceProfile, kind: str, plan: MemoryPlan, runtime: Runtime) -> str:
    return (f"# {profile.description}\n\nA qwdeploy bundle for `{profile.name}`: check it with `qwdeploy verify .`, "
            f"then run it with {runtime.name} {runtime.requirement} (packaged with {runtime.tested_with or 'none'}):\n\n"
            f"    {RUN[kind]}\n\nMemory: {describe(plan)}.\n")


def _modelfile(gguf: Path) -> str:
    from ...exporters.gguf.reader import GGUFFile

    meta = GGUFFile(gguf).metadata
    tokens, eos = meta.get("tokenizer.ggml.tokens", []), meta.get("tokenizer.ggml.eos_token_id")
    stop = f'PARAMETER stop "{tokens[eos]}"\n' if isinstance(eos, int) and eos < len(tokens) else ""
    return f"FROM ./{MODEL['gguf']}\n{stop}"


def package(artifact: Path, profile: DeviceProfile, out: Path, context: int | None = None, force: bool = False,
            allow_misfit: bool = False) -> Packaged:
    """A bundle folder at `out`; refuses an artifact that does not fit the profile unless `allow_misfit`."""
    artifact = Path(artifact)
    kind = artifact_kind(artifact)
    if kind not in MODEL:
        raise QwdeployError("a checkpoint is packaged after export: qwdeploy export it for the profile first",
                            artifact)
    integrity = preflight(artifact, kind)
    plan = memory_plan(artifact, kind, profile, context)
    if not plan.fits and not allow_misfit:
        raise QwdeployError(f"does not fit {profile.name}: {describe(plan)}; pick a smaller --quant or "
                            "--context, or pass --allow-misfit", artifact)
    backend = _backend(artifact, kind)
    runtime = _runtime(kind, backend)
    with atomic_directory(out, force=force, inputs=[artifact]) as tmp:
        if kind == "gguf":
            shutil.copy2(artifact, tmp / MODEL[kind])
            (tmp / MODELFILE).write_text(_modelfile(artifact))
        else:
            links = [p for p in artifact.rglob("*") if p.is_symlink()]
            if links:
                raise QwdeployError(f"{links[0].relative_to(artifact)} is a link; a bundle holds files only", artifact)
            shutil.copytree(artifact, tmp / MODEL[kind])
        (tmp / README).write_text(_readme(profile, kind, plan, runtime))
        export = {"integrity": integrity, "backend": backend.backend if backend else None,
                  "quant": backend.quant if backend else None, "graph_check": backend.graph_check if backend else None}
        manifest = BundleManifest(FORMAT, FORMAT_VERSION, metadata.version("qwdeploy"), profile.name, kind, MODEL[kind],
                                  export, runtime, plan, file_entries(tmp))
        manifest.write(tmp)
    return Packaged(Path(out), manifest, integrity)
