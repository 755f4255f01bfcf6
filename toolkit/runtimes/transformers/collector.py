"""Profiler collectors: a Hugging Face checkpoint on transformers' own PyTorch implementation (the reference).

Launches are the aten ops of one decode step (recorded by torch.profiler) that do the work
themselves: not in NO_KERNEL (views, allocation, dtype queries), and calling no op that does.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from ...engines import quiet_native_output
from ...errors import MissingDependencyError, QwdeployError
from ...profiler.contract import ArtifactInfo, OpEvent, OpReport, RunSample
from ...reference import load_pretrained

NO_KERNEL = frozenset({
    "aten::to", "aten::_to_copy", "aten::resolve_conj", "aten::resolve_neg", "aten::result_type",
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::view", "aten::_unsafe_view", "aten::as_strided",
    "aten::t", "aten::transpose", "aten::permute", "aten::expand", "aten::slice", "aten::select", "aten::unsqueeze",
    "aten::squeeze", "aten::reshape", "aten::detach", "aten::alias", "aten::resize_", "aten::lift_fresh",
    "aten::_reshape_alias", "aten::unflatten", "aten::split", "aten::chunk", "aten::narrow", "aten::contiguous",
})
METHOD = "torch.profiler: aten ops per decode step that compute themselves (no computing sub-op; views, allocation excluded)"
DTYPE = {"cpu": "float32", "cuda": "float16"}


def _torch():
    try:
        import torch
        import transformers
    except ImportError:
        raise MissingDependencyError("profiling a checkpoint needs transformers: pip install 'qwdeploy[hf]'") from None
    return torch, transformers


class HfSession:
    def __init__(self, folder: Path, device: str, threads: int | None, options: dict[str, str]):
        if options:
            raise QwdeployError(f"unknown checkpoint collector option(s) {', '.join(sorted(options))}")
        torch, transformers = _torch()
        self.torch, self.transformers, self.device = torch, transformers, device
        self._threads_before = torch.get_num_threads()  # torch's count is the process's: restored on close
        if threads:
            torch.set_num_threads(threads)
        self.model = load_pretrained(folder, DTYPE[device]).to(device)
        config = self.model.config
        params = {id(p): p for p in self.model.parameters()}.values()
        weight_bytes = sum(p.numel() * p.element_size() for p in params)
        embed = self.model.get_input_embeddings().weight
        gathered = 0 if config.tie_word_embeddings else embed.numel() * embed.element_size()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        kv = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * embed.element_size()
        self.info = ArtifactInfo(
            runtime=f"transformers {transformers.__version__}, torch {torch.__version__} ({device}, {DTYPE[device]})",
            weight_bytes=weight_bytes, weight_bytes_read_per_token=weight_bytes - gathered, kv_bytes_per_token=kv,
            context_length=config.max_position_embeddings, vocab_size=config.vocab_size,
            details={"architecture": type(self.model).__name__, "threads": str(torch.get_num_threads())})

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _step(self, ids, cache):
        """ids [batch, n] → next tokens [batch, 1], reading only the last position's logits."""
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(-1, keepdim=True)  # [batch, 1]

    def _generate(self, prompt: np.ndarray, decode_steps: int, around_step=None):
        torch = self.torch
        with torch.inference_mode():
            cache = self.transformers.DynamicCache()
            ids = torch.from_numpy(prompt).to(self.device)  # [batch, prompt_len]
            self._sync()
            start = time.perf_counter()
            token = self._step(ids, cache)
            self._sync()
            ttft, steps = time.perf_counter() - start, []
            for step in range(decode_steps):
                start = time.perf_counter()
                if around_step:
                    token = around_step(step, lambda t=token: self._step(t, cache))
                else:
                    token = self._step(token, cache)
                self._sync()
                steps.append(time.perf_counter() - start)
        return ttft, steps

    def _device_reset(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def run(self, prompt: np.ndarray, gen: int) -> RunSample:
        self._device_reset()
        ttft, steps = self._generate(prompt, gen - 1)
        peak = int(self.torch.cuda.max_memory_allocated()) if self.device == "cuda" else None
        return RunSample(batch=prompt.shape[0], prompt_len=prompt.shape[1], ttft_s=ttft, step_s=steps,
                         device_peak_bytes=peak)

    def instrument(self, prompt: np.ndarray, steps: int) -> OpReport:
        profiler = self.torch.profiler
        launches: list[int] = []
        events: list[OpEvent] = []

        def profiled(step: int, compute):
            with quiet_native_output(), profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
                token = compute()
            kernels = sorted(_kernels(prof.events()), key=lambda e: e.time_range.start)
            launches.append(len(kernels))
            # Each step has its own profiler clock: lay the steps end to end on one time axis.
            cursor = max((e.start_s + e.dur_s for e in events), default=0.0)
            first = kernels[0].time_range.start if kernels else 0
            events.extend(OpEvent(step, e.name, e.name, cursor + (e.time_range.start - first) / 1e6,
                                  e.time_range.elapsed_us() / 1e6) for e in kernels)
            return token

        self._generate(prompt, steps, around_step=profiled)
        return OpReport(METHOD, launches, events)

    def close(self) -> None:
        self.model = None
        self.torch.set_num_threads(self._threads_before)


def _kernels(events) -> list:
    """Events that compute themselves: a counted op whose descendants include no counted op."""
    def computes(e) -> bool:
        return e.name not in NO_KERNEL or any(computes(c) for c in e.cpu_children)

    return [e for e in events if e.name not in NO_KERNEL and not any(computes(c) for c in e.cpu_children)]


class HfCollector:
    kind = "hf"

    def __init__(self, device: str):
        self.device = device

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
            return "transformers and torch are not installed (pip install 'qwdeploy[hf]')"
        if self.device == "cuda":
            torch, _ = _torch()
            if not torch.cuda.is_available():
                return f"torch {torch.__version__} sees no CUDA GPU"
        return None

    def open(self, artifact: Path, threads: int | None, options: dict[str, str]) -> HfSession:
        return HfSession(artifact, self.device, threads, options)


COLLECTOR = HfCollector("cpu")
CUDA_COLLECTOR = HfCollector("cuda")
