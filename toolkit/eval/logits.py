"""One pass over the text per artifact: its logits, reduced to per-position figures against the reference —
agreement and next-token NLL — CHUNK positions at a time, so perplexity reuses the agreement's logits and
float64 copies of [positions, 152k] rows never exist at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ArtifactError, QwdeployError
from ..metrics import PositionAgreement, per_position
from .perplexity import CHUNK, token_nll
from .positions import concatenate
from .targets import Target

CPU_PROVIDER = "CPUExecutionProvider"  # every ONNX target runs here on the CPU, the CANN static graph included


@dataclass(frozen=True)
class Scores:
    nll: np.ndarray  # [positions - 1] -log p(next token)
    agreement: PositionAgreement | None  # per position, against the reference; None for the reference itself


def _gguf(path: Path, ids: list[int]) -> np.ndarray:
    from ..runtimes.llamacpp.evaluate import all_logits

    return all_logits(path, ids)


def _onnx(folder: Path, ids: list[int]) -> np.ndarray:
    from ...exporters.onnx.verify import onnx_logits

    return onnx_logits(folder, ids, CPU_PROVIDER)


# Native artifact kind → its logits [len(ids), vocab] for one sequence, in the calling process (checkpoints
# go through the model their job loads once).
LOGITS: dict[str, Callable[[Path, list[int]], np.ndarray]] = {"gguf": _gguf, "onnx": _onnx}


def compare(logits: np.ndarray, ids: list[int], store: Path, path: Path) -> Scores:
    """`logits` [len(ids), vocab] against the reference's prefix saved in `store` (.npy)."""
    reference = np.load(store, mmap_mode="r")  # [>= len(ids), vocab]
    if logits.shape != (len(ids), reference.shape[1]):
        raise ArtifactError(f"logits of shape {logits.shape} for {len(ids)} tokens; the reference has a "
                            f"vocabulary of {reference.shape[1]}", path)
    parts, nll = [], []
    for start in range(0, len(ids), CHUNK):
        end = min(start + CHUNK, len(ids))
        parts.append(per_position(reference[start:end], logits[start:end]))
        nll.append(token_nll(logits[start:end], ids[start + 1:end + 1]))
    return Scores(np.concatenate(nll), concatenate(parts))


def check_runnable(target: Target) -> None:
    """Refuse, before any long work, an artifact this machine's engines cannot run."""
    from ..profiler.collectors import collector_for

    collector_for(target.kind, "cpu")  # its engine is installed (and llama.cpp's workarounds are set)
    if target.kind != "onnx":
        return
    from ...exporters.onnx.verify import skip_reason

    reason = skip_reason(target.path, CPU_PROVIDER)
    if reason:
        raise QwdeployError(f"cannot be evaluated on this machine: {reason}", target.path)
