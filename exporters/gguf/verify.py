"""Load a GGUF with llama.cpp (in a child process) and compare its logits with transformers'."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...toolkit.runtimes.llamacpp import evaluate, native
from ...toolkit.engines import run_isolated
from ...toolkit.errors import MissingDependencyError
from ...toolkit.metrics import Agreement, agreement
from ...toolkit.reference import prompt_ids, transformers_logits

VERIFY_ADVICE = ("the GGUF file itself may be fine: pass --no-verify to skip llama.cpp, or rebuild "
                 "llama-cpp-python without native CPU features (see README, 'llama.cpp crashes')")


def llama_logits(gguf_path: Path, ids: list[int], threads: int | None = None) -> np.ndarray:
    """llama.cpp's logits [seq, vocab] for one sequence, computed in a child process."""
    if not native.llama_cpp_installed():
        raise MissingDependencyError("GGUF verification needs llama.cpp: pip install 'qwdeploy[llama]'")
    native.note_workarounds()
    return run_isolated(evaluate.ENGINE, gguf_path, f"evaluating {Path(gguf_path).name}", VERIFY_ADVICE,
                        evaluate.all_logits, Path(gguf_path), list(ids), threads or os.cpu_count())


def llama_quantize(source: Path, out: Path, file_type: int, type_name: str) -> None:
    """llama.cpp's quantizer, in a child process."""
    if not native.llama_cpp_installed():
        raise MissingDependencyError(f"{type_name} is a llama.cpp K-quant: pip install 'qwdeploy[llama]' "
                                     "(or pick q8_0/q4_0/q5_0 which need only gguf)")
    run_isolated(evaluate.ENGINE, out, f"quantizing to {type_name}",
                 "try another --quant, or a llama-cpp-python built without native CPU features",
                 evaluate.quantize, Path(source), Path(out), file_type)


def compare_with_transformers(gguf_path: Path, checkpoint_dir: Path) -> Agreement:
    ids = prompt_ids(checkpoint_dir)
    return agreement(transformers_logits(checkpoint_dir, ids), llama_logits(gguf_path, ids))
