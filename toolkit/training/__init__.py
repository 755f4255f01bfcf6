"""A small Qwen model trained here, on the CPU, to retrieve passkeys and model a generated text."""

from .build import build_trained_checkpoint
from .data import default_text, needle_prompt, qwen_encode
from .model import TRAINED_ARCHS, TRAINED_LENGTH

__all__ = ["TRAINED_ARCHS", "TRAINED_LENGTH", "build_trained_checkpoint", "default_text", "needle_prompt",
           "qwen_encode"]
