"""A checkpoint's BPE vocabulary and special-token ids, read and checked once for every format.

Fine-tuned checkpoints often name bos/eos only in tokenizer_config.json, as token strings; the ids
are then resolved through the vocabulary. Every id is checked to lie inside the model's vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import Checkpoint
from .errors import CheckpointError
from .files import is_int, read_json_object

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class Vocabulary:
    tokens: dict[str, int]  # token text → id, added tokens included
    merges: list[str | list[str]]  # in rank order, as stored: "a b" or ["a", "b"]
    special: dict[int, bool]  # added token id → whether it is special (control)

    def merge_lines(self) -> list[str]:
        return [m if isinstance(m, str) else " ".join(m) for m in self.merges]


@dataclass(frozen=True)
class SpecialTokens:
    bos: int | None
    eos: tuple[int, ...]  # generation stops at any of these
    pad: int | None
    eos_token: int | None  # tokenizer_config.json's eos_token: the chat turn end, when it names one
    pad_token: int | None  # tokenizer_config.json's pad_token


def read_vocabulary(ckpt: Checkpoint) -> Vocabulary:
    """tokenizer.json as a BPE vocabulary; a missing or unusable file is a one-line CheckpointError."""
    path = ckpt.directory / TOKENIZER_FILE
    if not path.exists():
        raise CheckpointError(f"{TOKENIZER_FILE} is missing; exported artifacts carry the tokenizer",
                              ckpt.directory)
    data = read_json_object(path, TOKENIZER_FILE)
    # Checked in place, not copied: a 150k-token vocabulary as Python objects is tens of MB already.
    model = data.get("model")
    tokens, merges = (model.get("vocab"), model.get("merges")) if isinstance(model, dict) else (None, None)
    try:
        if not (isinstance(tokens, dict) and tokens and all(map(is_int, tokens.values()))
                and min(tokens.values()) >= 0 and isinstance(merges, list) and all(map(_is_merge, merges))):
            raise ValueError(model)
        added = [(str(a["content"]), _id(a["id"]), bool(a.get("special"))) for a in data.get("added_tokens", [])]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("not a BPE tokenizer.json (needs model.vocab and model.merges)", path) from None
    if model.get("type") != "BPE":
        raise CheckpointError(f"tokenizer model is {model.get('type')!r}, expected BPE", path)
    for text, i, _ in added:
        tokens[text] = i
    if max(tokens.values()) >= ckpt.spec.vocab_size:
        raise CheckpointError(f"tokenizer has ids up to {max(tokens.values())} but vocab_size is "
                              f"{ckpt.spec.vocab_size}", path)
    return Vocabulary(tokens, merges, {i: special for _, i, special in added})


def _is_merge(merge: object) -> bool:
    return type(merge) is str or (type(merge) is list and len(merge) == 2
                                  and type(merge[0]) is str and type(merge[1]) is str)


def _id(value: object) -> int:
    if not is_int(value) or value < 0:
        raise ValueError(value)
    return value


def _token(value: object, vocab: Vocabulary, path: Path) -> int | None:
    content = value.get("content") if isinstance(value, dict) else value
    if content is None:
        return None
    if not isinstance(content, str) or content not in vocab.tokens:
        raise CheckpointError(f"special token {content!r} is not in the vocabulary", path)
    return vocab.tokens[content]


def _ids(value: object, key: str, vocab_size: int, path: Path) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < vocab_size for v in values):
        raise CheckpointError(f"'{key}' must be token ids below vocab_size {vocab_size}, got {value!r}", path)
    return tuple(values)


def special_tokens(ckpt: Checkpoint, vocab: Vocabulary) -> SpecialTokens:
    """bos/eos/pad from generation_config.json, then config.json, then tokenizer_config.json's token names."""
    size, gen_path = ckpt.spec.vocab_size, ckpt.directory / "generation_config.json"
    tok_path = ckpt.directory / "tokenizer_config.json"
    found: dict[str, tuple[int, ...]] = {}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        found[key] = (_ids(ckpt.generation_config.get(key), key, size, gen_path)
                      or _ids(ckpt.config.get(key), key, size, ckpt.config_path))
    named = {key: _token(ckpt.tokenizer_config.get(key), vocab, tok_path)
             for key in ("bos_token", "eos_token", "pad_token")}
    eos = found["eos_token_id"] or tuple(i for i in [named["eos_token"]] if i is not None)
    bos = found["bos_token_id"][0] if found["bos_token_id"] else named["bos_token"]
    pad = found["pad_token_id"][0] if found["pad_token_id"] else named["pad_token"]
    return SpecialTokens(bos=bos, eos=eos, pad=pad, eos_token=named["eos_token"], pad_token=named["pad_token"])
