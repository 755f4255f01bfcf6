"""Decode tokens/s of the ~0.5B Qwen-shaped checkpoint at int4 on 2 CPU threads, next to the tools people use.

    python bench/decode_cpu_int4.py [--tokens 64] [--runs 3] [--genai-python PY]

Rows: qwdeploy `--target cpu --quant int4` in onnxruntime; onnxruntime-genai's builder int4 export
(needs transformers 5: point --genai-python at such an environment) in onnxruntime; llama.cpp Q4_0
of the same checkpoint through llama-cpp-python. Each decodes the same greedy continuation length
after the same prompt; the runs visit the tools in turn (so drift hits all alike) and the median is
reported with the artifact's size on disk. Tools that are missing or fail are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import build_checkpoint, machine

from qwdeploy.toolkit.checkpoint import open_checkpoint

THREADS = 2
PROMPT = [9707, 1879, 11, 358, 1079, 264, 3460, 315, 279, 1879, 13, 576, 6722, 315, 9625, 374]


def _ort_decode(folder: Path, tokens: int, spec) -> float:
    """Greedy decode in onnxruntime on THREADS threads; returns decode tokens/s (prefill excluded)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    manifest = folder / "qwdeploy_backend.json"
    custom_ops = json.loads(manifest.read_text()).get("custom_ops") if manifest.is_file() else None
    library = custom_ops and custom_ops["library"]
    if library:
        options.register_custom_ops_library(library)
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    past = [n for n in inputs if n.startswith("past_key_values")]
    dtype = np.float16 if "float16" in inputs[past[0]].type else np.float32
    cache = {n: np.zeros((1, spec.num_kv_heads, 0, spec.head_dim), dtype) for n in past}  # genai's dims are symbolic
    ids, length, start = np.array([PROMPT], np.int64), 0, 0.0
    for step in range(tokens + 1):
        if step == 1:
            start = time.perf_counter()
        total = length + ids.shape[1]
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, total), np.int64),
                 "position_ids": np.arange(length, total, dtype=np.int64)[None], **cache}
        names = [o.name for o in session.get_outputs()]
        out = dict(zip(names, session.run(names, {k: v for k, v in feeds.items() if k in inputs})))
        cache = {n: out[n.replace("past_key_values", "present")] for n in past}
        ids, length = out["logits"][:, -1:].argmax(-1).astype(np.int64), total
    return tokens / (time.perf_counter() - start)


def _llama_decode(gguf: Path, tokens: int) -> float:
    from llama_cpp import Llama

    llm = Llama(str(gguf), n_threads=THREADS, n_ctx=256, verbose=False)
    llm.eval(PROMPT)
    start = time.perf_counter()
    for _ in range(tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([token])
    return tokens / (time.perf_counter() - start)


def _size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError((done.stderr.strip().splitlines() or ["failed"])[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="small")
    parser.add_argument("--genai-python", default=sys.executable)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qwdeploy" / "bench")
    args = parser.parse_args()

    print(machine(("onnxruntime", "onnxruntime-genai", "llama-cpp-python")))
    checkpoint = build_checkpoint(args.work / f"qwen2-{args.size}", "qwen2", args.size)
    spec = open_checkpoint(checkpoint).spec
    out = args.work / f"decode-{args.size}"
    print(f"checkpoint: qwen2/{args.size}; {len(PROMPT)}-token prompt, {args.tokens} greedy tokens, "
          f"{THREADS} threads, median of {args.runs} runs\n")
    tools = {
        "qwdeploy cpu int4 (onnxruntime)": (
            ["qwdeploy", "export", str(checkpoint), "--format", "onnx", "--target", "cpu", "--quant", "int4",
             "-o", str(out / "qwdeploy"), "--force"], lambda: _ort_decode(out / "qwdeploy", args.tokens, spec)),
        "qwdeploy cpu int4, our ops (onnxruntime)": (
            ["qwdeploy", "export", str(checkpoint), "--format", "onnx", "--target", "cpu", "--quant", "int4",
             "-O", "custom_ops=on", "-o", str(out / "qwdeploy-ops"), "--force"],
            lambda: _ort_decode(out / "qwdeploy-ops", args.tokens, spec)),
        "genai builder int4 (onnxruntime)": (
            [args.genai_python, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint), "-o",
             str(out / "genai"), "-p", "int4", "-e", "cpu"], lambda: _ort_decode(out / "genai", args.tokens, spec)),
        "llama.cpp Q4_0": (
            ["qwdeploy", "export", str(checkpoint), "--format", "gguf", "--quant", "q4_0", "-o",
             str(out / "model-q4_0.gguf"), "--force"], lambda: _llama_decode(out / "model-q4_0.gguf", args.tokens)),
    }
    decoders, sizes = {}, {}
    for name, (export, decode) in tools.items():
        try:
            _run(export)
            decode()  # warm-up: page the weights in, let the runtime pack them
        except (RuntimeError, ImportError, OSError) as exc:
            print(f"{name:40s} skipped: {exc}")
            continue
        decoders[name], sizes[name] = decode, _size_mib(Path(export[export.index("-o") + 1]))
    rates: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(args.runs):
        for name, decode in decoders.items():
            rates[name].append(decode())
    results = {name: statistics.median(r) for name, r in rates.items()}
    ours = results.get("qwdeploy cpu int4 (onnxruntime)")
    for name, rate in results.items():
        ratio = f"   qwdeploy/this x{ours / rate:.2f}" if ours and not name.startswith("qwdeploy") else ""
        print(f"{name:40s} {rate:8.1f} tokens/s {sizes[name]:8.0f} MiB{ratio}")

if __name__ == "__main__":
    main()
