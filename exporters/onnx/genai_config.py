"""genai_config.json: what onnxruntime-genai needs to run the exported folder."""

from __future__ import annotations

import json
from pathlib import Path

from ...toolkit.checkpoint import Checkpoint
from ...toolkit.errors import CheckpointError
from ...toolkit.vocabulary import read_vocabulary, special_tokens
from .decoder import ATTENTION_MASK, INPUT_IDS, LOGITS, PAST_KEY, PAST_VALUE, POSITION_IDS, PRESENT_KEY, PRESENT_VALUE


# onnxruntime-genai model types: it knows no MoE Qwen types, and needs none, since the MoE lives
# inside our graph and the decoder I/O is the same as the dense model's.
GENAI_TYPES = {"qwen2": "qwen2", "qwen2_moe": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3"}

# generation_config.json keys copied into "search", with onnxruntime-genai's defaults.
SEARCH_DEFAULTS = {"do_sample": False, "num_beams": 1, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
                   "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
                   "num_return_sequences": 1, "diversity_penalty": 0.0}


def _layer_pattern(template: str) -> str:
    return template.replace("{i}", "%d")


def _token_ids(checkpoint: Checkpoint) -> tuple[int, list[int], int]:
    ids = special_tokens(checkpoint, read_vocabulary(checkpoint))
    if not ids.eos:
        raise CheckpointError("no end-of-sequence token: none of config.json, generation_config.json and "
                              "tokenizer_config.json names one, and onnxruntime-genai needs it", checkpoint.directory)
    eos = list(ids.eos)
    return (ids.bos if ids.bos is not None else eos[0]), eos, (ids.pad if ids.pad is not None else eos[0])


def genai_config(checkpoint: Checkpoint, model_file: str) -> dict:
    spec = checkpoint.spec
    bos, eos, pad = _token_ids(checkpoint)
    gen = checkpoint.generation_config
    search = {key: gen.get(key, default) for key, default in SEARCH_DEFAULTS.items()}
    # past and present are separate buffers: the graph concatenates past with the new keys.
    search.update(max_length=spec.max_position_embeddings, min_length=0, early_stopping=True,
                  past_present_share_buffer=False)
    decoder = {
        "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
        "filename": model_file,
        "head_size": spec.head_dim,
        "hidden_size": spec.hidden_size,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "num_hidden_layers": spec.num_layers,
        "inputs": {"input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, "position_ids": POSITION_IDS,
                   "past_key_names": _layer_pattern(PAST_KEY), "past_value_names": _layer_pattern(PAST_VALUE)},
        "outputs": {"logits": LOGITS, "present_key_names": _layer_pattern(PRESENT_KEY),
                    "present_value_names": _layer_pattern(PRESENT_VALUE)},
    }
    model = {"type": GENAI_TYPES[spec.model_type], "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
             "context_length": spec.max_position_embeddings, "vocab_size": spec.vocab_size, "decoder": decoder}
    return {"model": model, "search": search}


def write_genai_config(path: Path, config: dict) -> None:
    path.write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
