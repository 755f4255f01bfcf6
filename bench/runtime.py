"""Runtime rows: which artifact runs in which engine and environment, and the interleaved schedule.

Every measurement is one process (bench/child.py): load, a warm-up generation, one counted
generation with a prompt no other run used. A round visits every row in turn, so drift on a shared
machine hits all alike; the report takes medians over rounds.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from common import measure

CHILD = Path(__file__).resolve().parent / "child.py"
THREADS = 2
PROMPT, GEN, WARM_GEN = 128, 64, 8
LAYER = re.compile(r"/layers\.(\d+)/")


@dataclass(frozen=True)
class Runtime:
    name: str
    group: str  # rows compared with each other: 4-bit, 8-bit, fp32
    ours: bool  # qwdeploy's artifact in the runtime qwdeploy targets (the others are anchors)
    engine: str  # bench/child.py's engine
    env: str | None  # bench/envs.py's environment; None: the project's
    source: str | None  # the export whose artifact runs; None: the checkpoint itself
    onnx: bool = False  # an ONNX folder: batch sweep, launches and nodes per layer
    quick: bool = True
    logits_engine: str | None = None  # dumps fidelity logits when `engine` cannot (in the project's env)


RUNTIMES = (
    Runtime("qwdeploy CPU int4 (onnxruntime)", "4-bit", True, "ort", None, "qwdeploy ONNX CPU int4", onnx=True),
    Runtime("llama.cpp Q4_0 (qwdeploy's GGUF)", "4-bit", False, "llama", None, "qwdeploy GGUF q4_0"),
    Runtime("llama.cpp Q4_K_M (qwdeploy's GGUF)", "4-bit", False, "llama", None, "qwdeploy GGUF q4_k_m", quick=False),
    Runtime("onnxruntime-genai int4", "4-bit", False, "genai", "genai", "genai builder int4", onnx=True,
            logits_engine="ort"),
    Runtime("OpenVINO int4 (openvino-genai)", "4-bit", False, "openvino", "openvino", "optimum-intel OpenVINO int4"),
    Runtime("llama.cpp Q8_0 (qwdeploy's GGUF)", "8-bit", False, "llama", None, "qwdeploy GGUF q8_0", quick=False),
    Runtime("qwdeploy fp32 (onnxruntime)", "fp32", True, "ort", None, "qwdeploy ONNX fp32", onnx=True, quick=False),
    Runtime("onnxruntime-genai fp32", "fp32", False, "genai", "genai", "genai builder fp32", onnx=True,
            quick=False, logits_engine="ort"),
    Runtime("optimum ORTModelForCausalLM fp32", "fp32", False, "optimum", "optimum", "optimum ONNX fp32", onnx=True,
            quick=False),
    Runtime("transformers eager fp32", "fp32", False, "transformers", None, None, quick=False),
)


@dataclass
class Target:
    """A runtime row made concrete for one shape: the artifact on disk and the interpreter to run it."""

    row: Runtime
    shape: str
    artifact: Path
    python: str
    size_bytes: int
    samples: list[dict] = field(default_factory=list)
    skipped: str = ""


def run_child(python: str, job: dict, timeout: float) -> dict:
    """One child process; its result dict, with the process's own peak RSS (wait4) as `process_rss_mib`."""
    with tempfile.TemporaryDirectory(prefix="qwdeploy-bench-") as tmp:
        job = {**job, "threads": THREADS, "result": str(Path(tmp) / "result.json")}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        run = measure([python, str(CHILD), str(Path(tmp) / "job.json")], timeout)
        result = json.loads((Path(tmp) / "result.json").read_text())
    return {**result, "process_rss_mib": run.peak_rss_mib, "process_s": run.seconds}


def bandwidth_now() -> float:
    """The machine's read bandwidth at this moment (bytes/s), measured as qwdeploy's profiler measures it but
    not from its per-host cache: a shared VM's moves by half between hours. In a child, so the measurement's
    512 MB of arrays stay out of this parent's peak RSS and so out of every child's."""
    code = "from qwdeploy.toolkit.profiler.bandwidth import measure_bandwidth; print(measure_bandwidth())"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def generation(batch: int, prompt: int, gen: int, seed: int) -> dict:
    return {"batch": batch, "prompt": prompt, "gen": gen, "seed": seed}


def interleave(targets: list[Target], rounds: int, batch: int, prompt: int, gen: int, timeout: float,
               say=print, label: str = "", each_run: Callable[[], dict] | None = None) -> None:
    """`rounds` rounds over the targets; each child warms up, then counts one generation with a fresh prompt.
    `each_run()` runs before every run, and what it returns joins the run's sample (the bandwidth of the moment)."""
    for r in range(rounds):
        for i, target in enumerate(targets):
            if target.skipped:
                continue
            before = each_run() if each_run else {}
            say(f"  {label}round {r + 1}/{rounds}: {target.row.name} ({target.shape})")
            job = {"engine": target.row.engine, "path": str(target.artifact),
                   "warmup": generation(batch, prompt, WARM_GEN, seed=10_000 + i),
                   "runs": [generation(batch, prompt, gen, seed=1000 * (r + 1) + i)]}
            try:
                result = run_child(target.python, job, timeout)
            except (RuntimeError, OSError, ValueError) as exc:
                target.skipped = f"failed: {exc}"
                continue
            target.samples.append({**result["runs"][0], "peak_rss_mib": result["peak_rss_mib"],
                                   "load_s": result["load_s"], **before})


def summary(target: Target) -> dict:
    """Medians over the counted runs, with the row's facts; the per-run samples are kept as they are."""
    out = {"row": target.row.name, "group": target.row.group, "ours": target.row.ours, "shape": target.shape,
           "engine": target.row.engine, "env": target.row.env or "project", "artifact": target.artifact.name,
           "size_bytes": target.size_bytes, "skipped": target.skipped, "samples": target.samples}
    if target.samples:
        for key in ("ttft_s", "prefill_tps", "decode_tps", "peak_rss_mib", "load_s"):
            out[key] = statistics.median(s[key] for s in target.samples)
    return out


def nodes_per_layer(folder: Path) -> float | None:
    """Median nodes per decoder layer of the folder's model.onnx (node names carry /layers.N/)."""
    import onnx

    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    counts: dict[int, int] = {}
    for node in graph.node:
        if match := LAYER.search(node.name + "/"):
            counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
    return statistics.median(counts.values()) if counts else None


def launches(folder: Path, python: str, timeout: float, steps: int = 4) -> tuple[float, int]:
    """Kernel launches per decode step (ONNX Runtime's profiler, median over `steps` steps) and graph nodes."""
    import onnx

    from qwdeploy.toolkit.runtimes.ort.events import decode_report

    with tempfile.TemporaryDirectory(prefix="qwdeploy-bench-trace-") as tmp:
        job = {"engine": "ort", "path": str(folder), "trace": str(Path(tmp) / "ort"),
               "runs": [generation(1, PROMPT, steps + 1, seed=7)]}
        result = run_child(python, job, timeout)
        report = decode_report(Path(result["trace_file"]), steps)
    nodes = len(onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node)
    return statistics.median(report.launches_per_step), nodes
