"""Greedy generation through an exported ONNX decoder on one ONNX Runtime execution provider."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from ...errors import ArtifactError, MissingDependencyError, QwdeployError
from ...files import read_json_object
from ...layout import MODEL_FILE, PROVIDER_OPTIONS
from ...profiler.contract import ArtifactInfo, OpReport, RunSample
from .cache import GrowingCache, new_cache
from .events import decode_report
from .facts import GraphFacts, custom_op_libraries, read_graph

PREFILL_CHUNK = 512  # longer prompts prefill in chunks, so full-vocabulary logits stay ~300 MB
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
DTYPES = {"float32": np.float32, "float16": np.float16}


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("profiling ONNX needs onnxruntime: pip install 'qwdeploy[onnx]'") from None
    return onnxruntime


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _described(library: Path) -> str:
    from ....kernels.library import loaded_variant

    variant = loaded_variant(library)
    return f"{library.name} ({variant} build)" if variant else library.name


class OrtSession:
    def __init__(self, folder: Path, provider: str, threads: int | None, options: dict[str, str]):
        ort = _ort()
        self.folder, self.provider, self.threads = Path(folder), provider, threads
        self.optimization = options.get("graph_optimization", "all")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise QwdeployError(f"graph_optimization '{self.optimization}': use one of {', '.join(OPTIMIZATION_LEVELS)}")
        unknown = set(options) - {"graph_optimization"}
        if unknown:
            raise QwdeployError(f"unknown ONNX collector option(s) {', '.join(sorted(unknown))}; known: graph_optimization")
        self.facts: GraphFacts = read_graph(self.folder)
        self.libraries = custom_op_libraries(self.folder, self.facts)
        self.session = self._session(profile_dir=None)
        self.kv_dtype = DTYPES[self.facts.kv_dtype]
        self.info = ArtifactInfo(
            runtime=f"onnxruntime {ort.__version__} ({provider})",
            weight_bytes=self.facts.weight_bytes,
            weight_bytes_read_per_token=self.facts.weight_bytes - self.facts.gathered_bytes,
            kv_bytes_per_token=self.facts.kv_bytes_per_token,
            context_length=self.facts.context_length,
            vocab_size=self.facts.vocab_size,
            details={"graph nodes": str(self.facts.nodes), "graph optimization": self.optimization,
                     "kv cache": self.facts.kv_dtype,
                     "kernel libraries": ", ".join(map(_described, self.libraries)) or "none"},
        )

    def _session(self, profile_dir: str | None):
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization]
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        for library in self.libraries:
            options.register_custom_ops_library(str(library))
        if profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(profile_dir) / "ort")
        return ort.InferenceSession(str(self.folder / MODEL_FILE), options,
                                    providers=[provider_with_options(self.folder, self.provider)])

    def new_cache(self, batch: int, capacity: int = 0) -> GrowingCache:
        """A cache for `batch` sequences, with room for `capacity` tokens where it is allocated ahead."""
        return new_cache(self.facts, batch, self.kv_dtype, self.provider == "CPUExecutionProvider", capacity)

    def forward(self, session, ids: np.ndarray, cache: GrowingCache, last_only: bool = False) -> np.ndarray:
        """ids [batch, n] after what `cache` holds → logits [batch, n, vocab] ([batch, 1, vocab] or all n with
        last_only, as the graph allows); the cache takes them in."""
        return cache.run(session, ids, last_only)

    def _generate(self, session, prompt: np.ndarray, decode_steps: int) -> tuple[float, list[float]]:
        cache = self.new_cache(prompt.shape[0], prompt.shape[1] + decode_steps)
        start = time.perf_counter()
        for chunk in range(0, prompt.shape[1], PREFILL_CHUNK):
            logits = self.forward(session, prompt[:, chunk:chunk + PREFILL_CHUNK], cache, last_only=True)
        token = logits[:, -1].argmax(-1)  # [batch]
        ttft = time.perf_counter() - start
        steps = []
        for _ in range(decode_steps):
            start = time.perf_counter()
            logits = self.forward(session, token[:, None].astype(np.int64), cache)
            token = logits[:, -1].argmax(-1)
            steps.append(time.perf_counter() - start)
        return ttft, steps

    def run(self, prompt: np.ndarray, gen: int) -> RunSample:
        ttft, steps = self._generate(self.session, prompt, gen - 1)
        return RunSample(batch=prompt.shape[0], prompt_len=prompt.shape[1], ttft_s=ttft, step_s=steps)

    def instrument(self, prompt: np.ndarray, steps: int) -> OpReport:
        # A profiling session of its own: its events cover every run it makes, and profiling slows runs.
        with tempfile.TemporaryDirectory(prefix="qwdeploy-ort-") as tmp:
            session = self._session(profile_dir=tmp)
            self._generate(session, prompt, 1)  # pays one-time costs (CUDA kernel choice, arena growth) first
            self._generate(session, prompt, steps)
            trace = session.end_profiling()
            del session
            return decode_report(Path(trace), steps)

    def close(self) -> None:
        self.session = None


def provider_with_options(folder: Path, provider: str) -> str | tuple[str, dict[str, str]]:
    """The provider, with the options the artifact asks it to run with (PROVIDER_OPTIONS), if any."""
    path = folder / PROVIDER_OPTIONS
    asked = read_json_object(path, PROVIDER_OPTIONS, ArtifactError) if path.is_file() else {}
    return (provider, asked[provider]) if provider in asked else provider


class OrtCollector:
    """An ONNX folder on one execution provider; `missing` says why that provider cannot run here."""

    kind = "onnx"

    def __init__(self, device: str, provider: str):
        self.device, self.provider = device, provider

    def unavailable_reason(self) -> str | None:
        if not onnxruntime_installed():
            return "onnxruntime is not installed (pip install 'qwdeploy[onnx]')"
        providers = _ort().get_available_providers()
        if self.provider not in providers:
            return f"this onnxruntime has no {self.provider} (it has {', '.join(providers)})"
        return None

    def open(self, artifact: Path, threads: int | None, options: dict[str, str]) -> OrtSession:
        return OrtSession(artifact, self.provider, threads, options)
