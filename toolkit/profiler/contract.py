"""What the core asks of a collector, and the plain records a collector hands back.

A collector is found by (artifact kind, device) and says why it cannot run here before anything
is loaded. Its session runs greedy generation on ids the core chooses, so every runtime measures
the same work: prefill `prompt` [batch, prompt_len], then `gen - 1` single-token decode steps.
Records are plain data: they cross process boundaries by pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ArtifactInfo:
    runtime: str  # e.g. "onnxruntime 1.32.0 (CPUExecutionProvider)"
    weight_bytes: int  # every weight the artifact stores
    weight_bytes_read_per_token: int  # what a decode step reads (an untied embedding table is gathered, not read)
    kv_bytes_per_token: int  # per sequence, all layers, keys and values
    context_length: int | None
    vocab_size: int
    details: dict[str, str] = field(default_factory=dict)  # (label → value) shown under the artifact


@dataclass
class RunSample:
    batch: int
    prompt_len: int
    ttft_s: float  # prefill through the first token's argmax
    step_s: list[float]  # one per decode step (gen - 1 of them)
    host_peak_bytes: int = 0  # filled by the core: VmHWM during this run
    device_peak_bytes: int | None = None  # the collector's device memory high-water mark, if it has one


@dataclass(frozen=True)
class OpEvent:
    step: int  # decode step index within the instrumented run
    name: str  # node or tensor name
    op: str  # op type
    start_s: float  # from the start of the first instrumented decode step
    dur_s: float


@dataclass
class OpReport:
    method: str  # how launches were counted, in one sentence
    launches_per_step: list[int]  # one per instrumented decode step
    events: list[OpEvent]  # every launch of the instrumented decode steps
    fallbacks_per_step: list[int] | None = None  # launches a device handed to a CPU (CANN AI_CPU tasks); None: unknown


class Session(Protocol):
    info: ArtifactInfo

    def run(self, prompt: np.ndarray, gen: int) -> RunSample:
        """Time one greedy generation: prompt [batch, prompt_len] int64, gen >= 2 tokens per sequence."""

    def instrument(self, prompt: np.ndarray, steps: int) -> OpReport:
        """Prefill, then count and time every kernel launch of `steps` decode steps (timings perturbed)."""

    def close(self) -> None: ...


class Collector(Protocol):
    kind: str  # artifact kind: "onnx", "gguf", "hf"
    device: str  # "cpu", "cuda", "cann"

    def unavailable_reason(self) -> str | None:
        """None when this machine can run the collector, else what is missing (never raises)."""

    def open(self, artifact: Path, threads: int | None, options: dict[str, str]) -> Session: ...
