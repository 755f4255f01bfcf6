"""One-shot llama.cpp jobs (logits at every position, quantization); run them through run_isolated."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import QwdeployError
from .native import llama_cpp, model_params, silence_logs

ENGINE = "llama.cpp"
MIN_CONTEXT = 64


def all_logits(path: Path, ids: list[int], threads: int | None = None) -> np.ndarray:
    """llama.cpp's logits [seq, vocab] for one sequence, evaluated in a single batch."""
    lib = llama_cpp()
    silence_logs()
    model = lib.llama_model_load_from_file(str(path).encode(), model_params())
    if not model:
        raise QwdeployError("llama.cpp could not load this GGUF file", path)
    try:
        params = lib.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = max(MIN_CONTEXT, len(ids))
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        # An f32 KV cache: the default f16 one would blur an f32 file's parity with transformers.
        params.type_k = params.type_v = lib.GGML_TYPE_F32
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED  # its f16 accumulation would blur it too
        ctx = lib.llama_init_from_model(model, params)
        if not ctx:
            raise QwdeployError(f"llama.cpp could not create a context for {len(ids)} tokens", path)
        try:
            return _decode_all(lib, ctx, model, ids, path)
        finally:
            lib.llama_free(ctx)
    finally:
        lib.llama_model_free(model)


def _decode_all(lib, ctx, model, ids: list[int], path: Path) -> np.ndarray:
    vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    batch = lib.llama_batch_init(len(ids), 0, 1)
    try:
        for i, token in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, True
            batch.seq_id[i][0] = 0
        batch.n_tokens = len(ids)
        status = lib.llama_decode(ctx, batch)
        if status != 0:
            raise QwdeployError(f"llama_decode failed with status {status}", path)
        rows = [np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, i), shape=(vocab,)) for i in range(len(ids))]
        return np.array(rows, dtype=np.float32)  # [seq, vocab]
    finally:
        lib.llama_batch_free(batch)


def quantize(source: Path, out: Path, file_type: int) -> None:
    """llama.cpp's own quantizer (K-quants), source GGUF → out GGUF."""
    lib = llama_cpp()
    silence_logs()
    params = lib.llama_model_quantize_default_params()
    params.ftype = file_type
    params.nthread = os.cpu_count() or 1
    if lib.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise QwdeployError(f"llama.cpp failed to quantize {source.name}", out)
