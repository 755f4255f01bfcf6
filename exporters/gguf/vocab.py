"""The tokenizer as llama.cpp reads it: gpt2-style BPE tokens, types, merges, special ids, template."""

from __future__ import annotations

import json

from gguf import GGUFValueType as V, TokenType
from gguf.constants import Keys

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.errors import CheckpointError
from .metadata import KeyValue

PRE_TOKENIZER = "qwen2"  # llama.cpp's name for Qwen's split regex


def _token_id(value: object, vocab: dict[str, int], path) -> int | None:
    content = value.get("content") if isinstance(value, dict) else value
    if content is None:
        return None
    if content not in vocab:
        raise CheckpointError(f"special token {content!r} is not in the vocabulary", path)
    return vocab[content]


def vocab_metadata(ckpt: Checkpoint) -> list[KeyValue]:
    path = ckpt.directory / "tokenizer.json"
    if not path.is_file():
        raise CheckpointError("tokenizer.json is missing; GGUF files carry the tokenizer", ckpt.directory)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data["model"]
        vocab: dict[str, int] = dict(model["vocab"])
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise CheckpointError("not a BPE tokenizer.json (needs model.vocab and model.merges)", path) from None
    if model.get("type") != "BPE":
        raise CheckpointError(f"tokenizer model is {model.get('type')!r}, expected BPE", path)
    types = {}
    for added in data.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        types[added["id"]] = TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
    size = ckpt.spec.vocab_size
    if max(vocab.values()) >= size:
        raise CheckpointError(f"tokenizer has ids up to {max(vocab.values())} but vocab_size is {size}", path)
    tokens = [f"[PAD{i}]" for i in range(size)]  # embedding rows no token uses
    token_types = [TokenType.UNUSED] * size
    for text, i in vocab.items():
        tokens[i] = text
        token_types[i] = types.get(i, TokenType.NORMAL)

    config = ckpt.tokenizer_config
    eos = _token_id(config.get("eos_token"), vocab, path)
    if eos is None:
        eos = (ckpt.spec.eos_token_id or (None,))[0]
    pad = _token_id(config.get("pad_token"), vocab, path)
    kv: list[KeyValue] = [
        (Keys.Tokenizer.MODEL, "gpt2", V.STRING),
        (Keys.Tokenizer.PRE, PRE_TOKENIZER, V.STRING),
        (Keys.Tokenizer.LIST, tokens, V.ARRAY),
        (Keys.Tokenizer.TOKEN_TYPE, [int(t) for t in token_types], V.ARRAY),
        (Keys.Tokenizer.MERGES, merges, V.ARRAY),
        (Keys.Tokenizer.ADD_BOS, bool(config.get("add_bos_token", False)), V.BOOL),
    ]
    ids = {Keys.Tokenizer.BOS_ID: ckpt.spec.bos_token_id, Keys.Tokenizer.EOS_ID: eos, Keys.Tokenizer.PAD_ID: pad}
    kv += [(key, int(value), V.UINT32) for key, value in ids.items() if value is not None]
    if ckpt.chat_template:
        kv.append((Keys.Tokenizer.CHAT_TEMPLATE, ckpt.chat_template, V.STRING))
    return kv
