"""Load one artifact in one engine, in this process alone, and measure it; results go to a JSON file.

    python child.py JOB.json

Runs in whichever environment the engine needs (the project's, or an anchor's), so it imports
nothing of qwdeploy or the bench: numpy and the engine only (and onnx, to read an ONNX graph's cache
inputs). The job names the engine, the artifact, the thread count, a warm-up, the counted runs (each
with its own prompt: OpenVINO caches repeated prefixes), and optionally the logits to dump for
fidelity or an ONNX Runtime trace of decode steps.
Peak RSS is read after the counted runs, before any logits dump, so it is the generation's own.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

MAX_PROMPT_ID = 100_000  # below every Qwen vocabulary, away from the special tokens


def prompt(batch: int, length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, MAX_PROMPT_ID, size=(batch, length), dtype=np.int64)  # [B, S]


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Clock:
    """A transformers streamer that only notes when each put() arrives (the prompt first, then tokens)."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def kv_layout(path: Path) -> tuple[int, int]:
    """(kv heads, head dim) from genai_config.json, else from the folder's config.json (optimum's export)."""
    genai = path / "genai_config.json"
    if genai.is_file():
        decoder = json.loads(genai.read_text())["model"]["decoder"]
        return decoder["num_key_value_heads"], decoder["head_size"]
    config = json.loads((path / "config.json").read_text())
    heads = config["num_attention_heads"]
    return config.get("num_key_value_heads", heads), config.get("head_dim") or config["hidden_size"] // heads


def attention_only(model: Path, names: set[str]) -> bool:
    """Whether every use of `names` in the model is a GroupQueryAttention's past_key or past_value."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    uses = [(node, slot) for node in graph.node for slot, name in enumerate(node.input) if name in names]
    return bool(uses) and all(node.op_type == "GroupQueryAttention" and slot in (3, 4) for node, slot in uses)


class Ort:
    """An ONNX folder (qwdeploy's or the genai builder's) in onnxruntime, greedy, KV cache fed back."""

    def __init__(self, path: Path, threads: int, trace: str | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        manifest = path / "qwdeploy_backend.json"
        ops = (json.loads(manifest.read_text()).get("custom_ops") or {}) if manifest.is_file() else {}
        if ops.get("library") and ops.get("emitted", True):
            options.register_custom_ops_library(str(path / ops["library"]))
        if trace:
            options.enable_profiling, options.profile_file_prefix = True, trace
        self.session = ort.InferenceSession(str(path / "model.onnx"), options, providers=["CPUExecutionProvider"])
        # logits_to_keep is an overridable initializer: get_inputs() leaves those out, and a feed filtered
        # by it alone would compute the LM head for every prompt position.
        self.inputs = {i.name: i for i in [*self.session.get_inputs(), *self.session.get_overridable_initializers()]}
        self.past = [n for n in self.inputs if n.startswith("past_key_values")]
        self.dtype = np.float16 if "float16" in self.inputs[self.past[0]].type else np.float32
        self.kv = kv_layout(path)
        self.names = [o.name for o in self.session.get_outputs()]
        self.in_place = attention_only(path / "model.onnx", set(self.past))

    def _feeds(self, ids: np.ndarray, length: int, last_only: bool) -> dict[str, np.ndarray]:
        total = length + ids.shape[1]
        feeds = {"input_ids": ids, "attention_mask": np.ones((ids.shape[0], total), np.int64),
                 "position_ids": np.tile(np.arange(length, total, dtype=np.int64), (ids.shape[0], 1))}
        if last_only:  # else the initializer's 0: every position
            feeds["logits_to_keep"] = np.ones(1, np.int64)
        return {k: v for k, v in feeds.items() if k in self.inputs}

    def forward(self, ids: np.ndarray, cache: dict, length: int, last_only: bool = False) -> tuple[np.ndarray, dict]:
        out = dict(zip(self.names, self.session.run(self.names, {**self._feeds(ids, length, last_only), **cache})))
        return out["logits"], {n: out[n.replace("past_key_values", "present")] for n in self.past}

    def _generate_in_place(self, ids: np.ndarray, gen: int) -> tuple[float, float]:
        """GroupQueryAttention graphs: one buffer per layer for the whole generation, bound as past and
        present, written in place (past_present_share_buffer, as onnxruntime-genai runs them)."""
        import onnxruntime as ort

        start = time.perf_counter()
        # The prompt runs the concatenating way: logits_to_keep (its last logits only) is an overridable
        # initializer, which IO binding cannot feed. Its past is as long as the whole generation (zeros,
        # never read), so each present comes back that long and becomes the buffer: no second copy.
        capacity = ids.shape[1] + gen
        logits, cache = self.forward(ids, {n: np.zeros((ids.shape[0], self.kv[0], capacity, self.kv[1]), self.dtype)
                                           for n in self.past}, 0, last_only=True)
        length, ids = ids.shape[1], logits[:, -1:].argmax(-1).astype(np.int64)  # [B, 1]
        first = time.perf_counter()
        buffers = {name: ort.OrtValue.ortvalue_from_numpy(present) for name, present in cache.items()}
        binding = self.session.io_binding()  # the buffers are bound once; each step rebinds its own inputs
        binding.bind_output("logits")
        for name, buffer in buffers.items():
            binding.bind_ortvalue_input(name, buffer)
            binding.bind_ortvalue_output(name.replace("past_key_values", "present"), buffer)
        for _ in range(gen - 1):
            for name, value in self._feeds(ids, length, False).items():
                binding.bind_cpu_input(name, value)
            self.session.run_with_iobinding(binding)
            length += 1
            ids = binding.get_outputs()[0].numpy()[:, -1:].argmax(-1).astype(np.int64)  # [B, 1]
        return first - start, time.perf_counter() - start

    def generate(self, ids: np.ndarray, gen: int) -> tuple[float, float]:
        if self.in_place:
            return self._generate_in_place(ids, gen)
        cache = {n: np.zeros((ids.shape[0], *self.kv[:1], 0, self.kv[1]), self.dtype) for n in self.past}
        start, length, first = time.perf_counter(), 0, 0.0
        for step in range(gen):
            logits, cache = self.forward(ids, cache, length, last_only=True)
            length += ids.shape[1]
            ids = logits[:, -1:].argmax(-1).astype(np.int64)  # [B, 1]
            if step == 0:
                first = time.perf_counter()
        return first - start, time.perf_counter() - start

    def logits(self, ids: np.ndarray) -> np.ndarray:
        cache = {n: np.zeros((1, self.kv[0], 0, self.kv[1]), self.dtype) for n in self.past}
        return self.forward(ids, cache, 0)[0][0].astype(np.float32)  # [S, V]

    def end_trace(self) -> str:
        return self.session.end_profiling()


class Genai:
    """onnxruntime-genai's own generator loop over a folder it can load."""

    def __init__(self, path: Path, threads: int, trace: str | None = None):
        import onnxruntime_genai as og

        config = og.Config(str(path))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.og, self.model = og, og.Model(config)

    def generate(self, ids: np.ndarray, gen: int) -> tuple[float, float]:
        params = self.og.GeneratorParams(self.model)
        length = ids.shape[1] + gen
        params.set_search_options(max_length=length, min_length=length, do_sample=False, batch_size=ids.shape[0])
        generator = self.og.Generator(self.model, params)
        start = time.perf_counter()
        generator.append_tokens(ids.astype(np.int32))
        generator.generate_next_token()
        first = time.perf_counter()
        for _ in range(gen - 1):
            generator.generate_next_token()
        return first - start, time.perf_counter() - start


class OpenVino:
    """openvino-genai's LLMPipeline; logits for fidelity through optimum-intel's OVModelForCausalLM."""

    def __init__(self, path: Path, threads: int, trace: str | None = None):
        import openvino_genai

        self.path, self.threads, self.genai = path, threads, openvino_genai
        self.pipe = openvino_genai.LLMPipeline(str(path), "CPU", INFERENCE_NUM_THREADS=threads)

    def generate(self, ids: np.ndarray, gen: int) -> tuple[float, float]:
        import openvino as ov

        config = self.genai.GenerationConfig()
        config.max_new_tokens, config.min_new_tokens, config.ignore_eos, config.do_sample = gen, gen, True, False
        inputs = self.genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        start = time.perf_counter()
        result = self.pipe.generate(inputs, config)
        total = time.perf_counter() - start
        return result.perf_metrics.get_ttft().mean / 1000, total

    def logits(self, ids: np.ndarray) -> np.ndarray:
        import torch
        from optimum.intel import OVModelForCausalLM

        del self.pipe
        model = OVModelForCausalLM.from_pretrained(str(self.path), ov_config={"INFERENCE_NUM_THREADS": str(self.threads)})
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)))
        return out.logits[0].float().numpy()  # [S, V]


class Torch:
    """transformers eager (fp32) or optimum's ORTModelForCausalLM: both generate() with a streamer clock."""

    def __init__(self, path: Path, threads: int, trace: str | None = None, optimum: bool = False):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        if optimum:
            import onnxruntime as ort
            from optimum.onnxruntime import ORTModelForCausalLM

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            self.model = ORTModelForCausalLM.from_pretrained(str(path), session_options=options, use_cache=True)
        else:
            from transformers import AutoModelForCausalLM

            self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                              attn_implementation="eager").eval()

    def generate(self, ids: np.ndarray, gen: int) -> tuple[float, float]:
        clock, tensor = Clock(), self.torch.from_numpy(ids)
        start = time.perf_counter()
        with self.torch.inference_mode():
            self.model.generate(tensor, attention_mask=self.torch.ones_like(tensor), max_new_tokens=gen,
                                min_new_tokens=gen, do_sample=False, streamer=clock, pad_token_id=0)
        return clock.times[1] - start, clock.times[-1] - start

    def logits(self, ids: np.ndarray) -> np.ndarray:
        tensor = self.torch.from_numpy(ids)
        with self.torch.inference_mode():
            out = self.model(input_ids=tensor, attention_mask=self.torch.ones_like(tensor))
        return out.logits[0].float().numpy()  # [S, V]


class Llama:
    """A GGUF file in llama.cpp through llama-cpp-python, greedy over the full logits row."""

    def __init__(self, path: Path, threads: int, trace: str | None = None, context: int = 2048,
                 all_logits: bool = False):
        from llama_cpp import Llama as Model

        self.path, self.threads = path, threads
        self.model = Model(str(path), n_threads=threads, n_threads_batch=threads, n_ctx=context, n_batch=context,
                           n_ubatch=min(context, 512), logits_all=all_logits, verbose=False)

    def generate(self, ids: np.ndarray, gen: int) -> tuple[float, float]:
        if ids.shape[0] != 1:
            raise ValueError("llama-cpp-python's high-level API decodes one sequence")
        self.model.reset()
        start = time.perf_counter()
        self.model.eval(ids[0].tolist())
        token = int(np.argmax(self.model.scores[self.model.n_tokens - 1]))
        first = time.perf_counter()
        for _ in range(gen - 1):
            self.model.eval([token])
            token = int(np.argmax(self.model.scores[self.model.n_tokens - 1]))
        return first - start, time.perf_counter() - start

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """In an instance that keeps every position's logits (which slows prefill, so not the timed one)."""
        del self.model
        full = Llama(self.path, self.threads, context=ids.shape[1] + 16, all_logits=True)
        full.model.eval(ids[0].tolist())
        return np.array(full.model.scores[:ids.shape[1]], np.float32)  # [S, V]


def _engine(job: dict):
    path, threads, trace = Path(job["path"]), job["threads"], job.get("trace")
    kind = job["engine"]
    if kind == "llama":
        runs = [job["warmup"], *job["runs"]] if job.get("warmup") else job["runs"]
        return Llama(path, threads, context=max((r["prompt"] + r["gen"] for r in runs), default=0) + 16)
    engines = {"ort": Ort, "genai": Genai, "openvino": OpenVino, "transformers": Torch,
               "optimum": lambda p, t, tr: Torch(p, t, tr, optimum=True)}
    return engines[kind](path, threads, trace)


def _timed(engine, run: dict) -> dict:
    ids = prompt(run["batch"], run["prompt"], run["seed"])
    ttft, total = engine.generate(ids, run["gen"])
    tokens = run["batch"] * (run["gen"] - 1)
    return {**run, "ttft_s": ttft, "total_s": total, "prefill_tps": run["batch"] * run["prompt"] / ttft,
            "decode_tps": tokens / (total - ttft)}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    result: dict = {"rss_start_mib": rss_mib()}
    start = time.perf_counter()
    engine = _engine(job)
    result.update(load_s=time.perf_counter() - start, rss_loaded_mib=rss_mib())
    if job.get("warmup"):
        _timed(engine, job["warmup"])
    result["runs"] = [_timed(engine, run) for run in job["runs"]]
    result["peak_rss_mib"] = rss_mib()
    if job.get("trace"):
        result["trace_file"] = engine.end_trace()
    if job.get("logits"):
        ids = np.array([job["logits"]["ids"]], np.int64)  # [1, S]
        np.save(job["logits"]["out"], engine.logits(ids))
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
