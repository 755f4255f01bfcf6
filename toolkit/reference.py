"""Reference logits from transformers' own implementation of the checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import MissingDependencyError

VERIFY_PROMPT = "The capital of France is Paris. Qwen models run on many devices, from boards to servers."
# Exports check themselves against transformers by default up to this size: beyond it an fp32 copy of the
# model in transformers costs more time and memory than the export.
VERIFY_MAX_PARAMETERS = 1_000_000_000


def _torch_and_transformers():
    try:
        import torch
        import transformers
    except ImportError:
        raise MissingDependencyError("reference logits need transformers: pip install 'qwdeploy[hf]'") from None
    return torch, transformers


def reference_installed() -> bool:
    """Whether transformers' logits (and the tokenizer that feeds them) can be computed here."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers", "tokenizers"))


def prompt_ids(directory: Path, text: str = VERIFY_PROMPT) -> list[int]:
    """Token ids of `text` under the checkpoint's own tokenizer.json."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependencyError("tokenizing needs the tokenizers package: pip install 'qwdeploy[hf]'") from None
    return Tokenizer.from_file(str(Path(directory) / "tokenizer.json")).encode(text).ids


def load_pretrained(directory: Path, dtype: str):
    """The checkpoint in transformers' own implementation, in torch dtype `dtype`, ready for inference."""
    torch, transformers = _torch_and_transformers()
    transformers.utils.logging.disable_progress_bar()  # transformers 5 draws one per load, on our stderr
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(torch, dtype)).eval()


def reference_model(directory: Path):
    """The checkpoint in transformers' own implementation, fp32 on the CPU, ready for inference."""
    return load_pretrained(directory, "float32")


def model_logits(model, ids: list[int]) -> np.ndarray:
    """A loaded model's logits [seq, vocab] for one sequence."""
    torch, _ = _torch_and_transformers()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def transformers_logits(directory: Path, ids: list[int]) -> np.ndarray:
    """fp32 logits [seq, vocab] for one sequence."""
    return model_logits(reference_model(directory), ids)
