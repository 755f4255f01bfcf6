"""Greedy multi-sequence generation through llama.cpp's C API, timed and (optionally) instrumented."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ....exporters.gguf.reader import GGUFFile
from ...engines import quiet_native_output
from ...errors import QwdeployError
from ...profiler.contract import ArtifactInfo, OpEvent, OpReport, RunSample
from .native import EMPTY_OPS, Ggml, llama_cpp, model_params, silence_logs

KV_BYTES = 2  # llama.cpp's default f16 KV cache
CTX_ROUND = 256
MAX_BATCH_TOKENS = 2048
METHOD = ("llama.cpp eval callback: ggml graph nodes computed per decode token, not counting "
          f"{', '.join(sorted(EMPTY_OPS))} (views the CPU backend does not compute)")


def gguf_facts(path: Path) -> tuple[int, int, int | None]:
    """(bytes a decode step reads, KV bytes per token, context length) from the GGUF header."""
    gguf = GGUFFile(path)
    meta, arch = gguf.metadata, gguf.metadata["general.architecture"]
    heads = meta[f"{arch}.attention.head_count"]
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    kv_heads = max(kv_heads) if isinstance(kv_heads, list) else kv_heads
    head_dim = meta[f"{arch}.embedding_length"] // (max(heads) if isinstance(heads, list) else heads)
    key_len = meta.get(f"{arch}.attention.key_length", head_dim)
    value_len = meta.get(f"{arch}.attention.value_length", head_dim)
    kv_per_token = meta[f"{arch}.block_count"] * kv_heads * (key_len + value_len) * KV_BYTES
    total = sum(t.nbytes for t in gguf.tensors.values())
    # With a separate output matrix, the token table is only gathered a row at a time.
    gathered = gguf.tensors["token_embd.weight"].nbytes if "output.weight" in gguf.tensors else 0
    return total - gathered, kv_per_token, meta.get(f"{arch}.context_length")


class LlamaSession:
    def __init__(self, path: Path, gpu_layers: int, threads: int | None, options: dict[str, str]):
        if options:
            raise QwdeployError(f"unknown GGUF collector option(s) {', '.join(sorted(options))}")
        self.lib = llama_cpp()
        silence_logs()
        self.path, self.threads = Path(path), threads or os.cpu_count() or 1
        read_per_token, kv_per_token, context = gguf_facts(self.path)
        with quiet_native_output():
            self.model = self.lib.llama_model_load_from_file(str(self.path).encode(), model_params(gpu_layers))
        if not self.model:
            raise QwdeployError("llama.cpp could not load this GGUF file", self.path)
        self.vocab = self.lib.llama_vocab_n_tokens(self.lib.llama_model_get_vocab(self.model))
        self.ggml = Ggml()
        self._ctx, self._ctx_key = None, None
        self.info = ArtifactInfo(
            runtime=f"llama.cpp via llama-cpp-python {self.lib.__version__}"
                    f"{' (GPU offload)' if gpu_layers else ' (CPU)'}",
            weight_bytes=int(self.lib.llama_model_size(self.model)),
            weight_bytes_read_per_token=read_per_token, kv_bytes_per_token=kv_per_token,
            context_length=context, vocab_size=self.vocab,
            details={"parameters": str(self.lib.llama_model_n_params(self.model)), "kv cache": "f16",
                     "threads": str(self.threads)})

    def new_context(self, batch: int, tokens: int, callback=None):
        """A context for `batch` sequences of up to `tokens` positions; the timed one is kept and reused."""
        params = self.lib.llama_context_default_params()
        params.n_ctx = -(-batch * tokens // CTX_ROUND) * CTX_ROUND
        params.n_seq_max = batch
        params.n_batch = min(params.n_ctx, MAX_BATCH_TOKENS)
        params.n_ubatch = min(params.n_batch, 512)
        params.n_threads = params.n_threads_batch = self.threads
        params.kv_unified = True
        if callback is not None:
            params.cb_eval = callback
        with quiet_native_output():
            ctx = self.lib.llama_init_from_model(self.model, params)
        if not ctx:
            raise QwdeployError(f"llama.cpp could not create a context for {batch} x {tokens} tokens", self.path)
        return ctx, params.n_batch

    def _timed_context(self, batch: int, tokens: int):
        key = (batch, -(-tokens // CTX_ROUND))
        if self._ctx_key != key:
            self._free_context()
            self._ctx, self._ctx_key = self.new_context(batch, tokens), key
        ctx, n_batch = self._ctx
        self.lib.llama_memory_clear(self.lib.llama_get_memory(ctx), True)
        return ctx, n_batch

    def decode(self, ctx, lb, tokens: np.ndarray, start: int, want_logits: bool) -> None:
        """tokens [batch, n] at positions start.. of sequences 0..batch-1, one llama_decode call."""
        batch, n = tokens.shape
        for i, (seq, offset) in enumerate(np.ndindex(batch, n)):
            lb.token[i] = int(tokens[seq, offset])
            lb.pos[i] = start + offset
            lb.n_seq_id[i] = 1
            lb.seq_id[i][0] = seq
            lb.logits[i] = want_logits and offset == n - 1
        lb.n_tokens = batch * n
        status = self.lib.llama_decode(ctx, lb)
        if status != 0:
            raise QwdeployError(f"llama_decode failed with status {status}", self.path)

    def _argmax(self, ctx, batch: int, n: int) -> np.ndarray:
        rows = [np.ctypeslib.as_array(self.lib.llama_get_logits_ith(ctx, seq * n + n - 1), shape=(self.vocab,))
                for seq in range(batch)]
        return np.array([row.argmax() for row in rows], dtype=np.int64)  # [batch]

    def _generate(self, ctx, n_batch: int, prompt: np.ndarray, decode_steps: int, on_step=None):
        batch, length = prompt.shape
        chunk = max(n_batch // batch, 1)
        lb = self.lib.llama_batch_init(max(n_batch, batch), 0, 1)
        try:
            start = time.perf_counter()
            for offset in range(0, length, chunk):
                part = prompt[:, offset:offset + chunk]
                self.decode(ctx, lb, part, offset, offset + part.shape[1] == length)
            token = self._argmax(ctx, batch, part.shape[1])
            ttft, steps = time.perf_counter() - start, []
            for step in range(decode_steps):
                if on_step:
                    on_step(step)
                start = time.perf_counter()
                self.decode(ctx, lb, token[:, None], length + step, True)
                token = self._argmax(ctx, batch, 1)
                steps.append(time.perf_counter() - start)
            return ttft, steps
        finally:
            self.lib.llama_batch_free(lb)

    def run(self, prompt: np.ndarray, gen: int) -> RunSample:
        ctx, n_batch = self._timed_context(prompt.shape[0], prompt.shape[1] + gen)
        ttft, steps = self._generate(ctx, n_batch, prompt, gen - 1)
        return RunSample(batch=prompt.shape[0], prompt_len=prompt.shape[1], ttft_s=ttft, step_s=steps)

    def instrument(self, prompt: np.ndarray, steps: int) -> OpReport:
        recorder = _NodeRecorder(self.ggml)
        callback = self.lib.ggml_backend_sched_eval_callback(recorder)
        ctx, n_batch = self.new_context(prompt.shape[0], prompt.shape[1] + steps + 1, callback)
        try:
            self._generate(ctx, n_batch, prompt, steps, on_step=recorder.begin_step)
        finally:
            self.lib.llama_free(ctx)
        return OpReport(METHOD, [recorder.launches[s] for s in range(steps)], recorder.events)

    def _free_context(self) -> None:
        if self._ctx is not None:
            self.lib.llama_free(self._ctx[0])
            self._ctx, self._ctx_key = None, None

    def close(self) -> None:
        self._free_context()
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None


class _NodeRecorder:
    """ggml's eval callback: asking for every node makes the scheduler compute (and report) one at a time."""

    def __init__(self, ggml: Ggml):
        self.ggml = ggml
        self.step = -1  # prefill
        self.origin = 0.0
        self.started = 0.0
        self.launches: dict[int, int] = {}
        self.events: list[OpEvent] = []

    def begin_step(self, step: int) -> None:
        self.step = step
        self.launches[step] = 0
        if step == 0:
            self.origin = time.perf_counter()

    def __call__(self, tensor: int, ask: bool, user_data) -> bool:
        now = time.perf_counter()
        if ask:
            self.started = now
            return True
        op = self.ggml.op(tensor)
        if self.step >= 0 and op not in EMPTY_OPS:
            self.launches[self.step] += 1
            self.events.append(OpEvent(self.step, self.ggml.name(tensor), op, self.started - self.origin,
                                       now - self.started))
        return True
