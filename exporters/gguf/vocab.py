"""The tokenizer as llama.cpp reads it: gpt2-style BPE tokens, types, merges, special ids, template."""

from __future__ import annotations

from gguf import GGUFValueType as V, TokenType
from gguf.constants import Keys

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.vocabulary import read_vocabulary, special_tokens
from .metadata import KeyValue

PRE_TOKENIZER = "qwen2"  # llama.cpp's name for Qwen's split regex


def vocab_metadata(ckpt: Checkpoint) -> list[KeyValue]:
    vocab = read_vocabulary(ckpt)
    size = ckpt.spec.vocab_size
    tokens = [f"[PAD{i}]" for i in range(size)]  # embedding rows no token uses
    token_types = [TokenType.UNUSED] * size
    for text, i in vocab.tokens.items():
        tokens[i] = text
        token_types[i] = TokenType.NORMAL
    for i, special in vocab.special.items():
        token_types[i] = TokenType.CONTROL if special else TokenType.USER_DEFINED
    ids = special_tokens(ckpt, vocab)
    eos = ids.eos_token if ids.eos_token is not None else (ids.eos or (None,))[0]
    kv: list[KeyValue] = [
        (Keys.Tokenizer.MODEL, "gpt2", V.STRING),
        (Keys.Tokenizer.PRE, PRE_TOKENIZER, V.STRING),
        (Keys.Tokenizer.LIST, tokens, V.ARRAY),
        (Keys.Tokenizer.TOKEN_TYPE, [int(t) for t in token_types], V.ARRAY),
        (Keys.Tokenizer.MERGES, vocab.merge_lines(), V.ARRAY),
        (Keys.Tokenizer.ADD_BOS, bool(ckpt.tokenizer_config.get("add_bos_token", False)), V.BOOL),
    ]
    special = {Keys.Tokenizer.BOS_ID: ids.bos, Keys.Tokenizer.EOS_ID: eos, Keys.Tokenizer.PAD_ID: ids.pad_token}
    kv += [(key, int(value), V.UINT32) for key, value in special.items() if value is not None]
    if ckpt.chat_template:
        kv.append((Keys.Tokenizer.CHAT_TEMPLATE, ckpt.chat_template, V.STRING))
    return kv
