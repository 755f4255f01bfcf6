"""build_trained_checkpoint: train, widen to the full vocabulary, write like any demo checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_directory
from ..checkpoint import SINGLE_FILE
from ..demo import write_metadata
from ..safetensors_io import TensorPlan, write_safetensors
from ..spec import spec_from_config
from ..tensors import expected_tensors
from .data import qwen_encode, used_ids
from .model import expand_vocabulary, trained_config
from .pinned import train_pinned
from .train import DEFAULT_STEPS, Progress


def build_trained_checkpoint(out: Path, arch: str = "qwen2", seed: int = 0, steps: int = DEFAULT_STEPS,
                             force: bool = False, progress: Progress | None = None) -> Path:
    """Train the demo model for `arch` (qwen2 or qwen3) and write its checkpoint at `out` (atomically).

    Same arguments: the same weights, x86 CPUs pinned to one float path (pinned.py). Stored as float32, the dtype it was
    trained in, so float32 exports can be compared exactly with transformers."""
    config = trained_config(arch)
    spec = spec_from_config(config)
    with atomic_directory(out, force=force) as tmp:
        used = used_ids(qwen_encode())
        state = expand_vocabulary(train_pinned(arch, seed, steps, progress), used)
        write_metadata(tmp, config)
        tensors = list(expected_tensors(spec))
        plans = [TensorPlan(t.name, np.dtype(np.float32), t.shape) for t in tensors]
        write_safetensors(tmp / SINGLE_FILE, plans, (state[t.name] for t in tensors), metadata={"format": "pt"})
    return out
