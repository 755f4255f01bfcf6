"""Load a GGUF with llama.cpp (through llama-cpp-python) and compare its logits with transformers'."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ...toolkit.errors import MissingDependencyError
from ...toolkit.metrics import Agreement, agreement
from ...toolkit.reference import prompt_ids, transformers_logits


def llama_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def _llama():
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependencyError("GGUF verification needs llama.cpp: pip install 'qwdeploy[llama]'") from None
    return llama_cpp


@contextlib.contextmanager
def quiet_native_output():
    """llama.cpp logs from C straight to fds 1 and 2; keep the terminal for our own output."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        for fd in (1, 2):
            os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def llama_logits(gguf_path: Path, ids: list[int], threads: int | None = None) -> np.ndarray:
    """llama.cpp's logits [seq, vocab] for one sequence, evaluated in a single batch."""
    llama_cpp = _llama()
    with quiet_native_output():
        # An f32 KV cache: the default f16 one would blur an f32 file's parity with transformers.
        llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=max(64, len(ids)), n_batch=max(64, len(ids)),
                              logits_all=True, verbose=False, n_threads=threads or os.cpu_count(),
                              n_gpu_layers=0, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
        llm.close()
    return logits


def compare_with_transformers(gguf_path: Path, checkpoint_dir: Path) -> Agreement:
    ids = prompt_ids(checkpoint_dir)
    return agreement(transformers_logits(checkpoint_dir, ids), llama_logits(gguf_path, ids))
