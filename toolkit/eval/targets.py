"""The artifacts under evaluation and the reference checkpoint: kind, engine, context, size on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import QwdeployError
from ..layout import artifact_kind
from ..profiler.artifacts import ENGINES, preflight

REFERENCE_ENGINE = "transformers fp32"


def _gguf_context(path: Path) -> int | None:
    from ..runtimes.llamacpp.session import gguf_facts

    return gguf_facts(path)[2]


def _onnx_context(folder: Path) -> int | None:
    from ..runtimes.ort.facts import read_graph

    return read_graph(folder).context_length  # a static graph's KV buffer, else genai_config's context


def _hf_context(folder: Path) -> int | None:
    from ..checkpoint import open_checkpoint

    return open_checkpoint(folder).spec.max_position_embeddings


CONTEXT: dict[str, Callable[[Path], int | None]] = {"gguf": _gguf_context, "onnx": _onnx_context, "hf": _hf_context}


@dataclass(frozen=True)
class Target:
    path: Path
    kind: str  # layout.artifact_kind
    context_length: int | None  # None: the artifact does not say
    size_bytes: int  # on disk: the file, or every file of the folder
    integrity: str  # how preflight checked it

    @property
    def engine(self) -> str:
        return REFERENCE_ENGINE if self.kind == "hf" else ENGINES[self.kind]

    def fits(self, tokens: int) -> bool:
        return self.context_length is None or tokens <= self.context_length


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def open_target(path: Path) -> Target:
    """Recognise and check an artifact before any engine opens it."""
    path = Path(path)
    kind = artifact_kind(path)
    integrity = preflight(path, kind)
    return Target(path, kind, CONTEXT[kind](path), _size(path), integrity)


def split_reference(reference: Path | None, targets: list[Target]) -> tuple[Target, list[Target]]:
    """(the reference checkpoint, the artifacts compared with it): --reference, else the first checkpoint given."""
    if reference is None:
        checkpoints = [t for t in targets if t.kind == "hf"]
        if not checkpoints:
            raise QwdeployError("eval compares artifacts with the checkpoint they were exported from: pass "
                                "--reference CHECKPOINT (a Hugging Face folder), or list the checkpoint among them")
        chosen = checkpoints[0]
    else:
        chosen = open_target(reference)
        if chosen.kind != "hf":
            raise QwdeployError(f"--reference must be a Hugging Face checkpoint folder (it runs in transformers), "
                                f"not a {chosen.kind} artifact", chosen.path)
    same = chosen.path.resolve()
    return chosen, [t for t in targets if t.path.resolve() != same]
