"""Time of the cpu pipeline's passes against the depth of the graph: it should grow linearly in layers.

    python bench/pass_scaling.py [--layers 28,80] [--runs 3] [--quant int4] [--custom-ops off]

Each depth is a Qwen3 checkpoint of the tiny width (hidden 64) with that many layers, exported to the
portable fp32 graph once; then the pipeline runs over it in memory --runs times (median reported), the
weights memory-mapped as in a real build. Per-layer time that stays flat as the depth grows means no
pass rescans the graph per rewrite.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

from common import machine
from qwdeploy.backends import BACKENDS
from qwdeploy.backends.base import Plan
from qwdeploy.backends.graph import Graph
from qwdeploy.backends.passes import run_phases
from qwdeploy.exporters.onnx.exporter import export
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.demo import demo_config, write_weights
from qwdeploy.toolkit.spec import spec_from_config
from qwdeploy.toolkit.tokenizer import write_tokenizer


def checkpoint(root: Path, layers: int) -> Path:
    out = root / f"qwen3-{layers}"
    out.mkdir()
    config = {**demo_config("qwen3", "tiny", "float32"), "num_hidden_layers": layers}
    (out / "config.json").write_text(json.dumps(config))
    write_tokenizer(out, config["max_position_embeddings"])
    write_weights(out, spec_from_config(config), "float32", seed=0, max_shard_bytes=2**31, progress=None)
    return out


def pass_seconds(portable: Path, plan: Plan, runs: int) -> tuple[float, int]:
    backend = BACKENDS.get("cpu")
    times, nodes = [], 0
    for _ in range(runs):
        graph = Graph(onnx.load(str(portable / "model.onnx"), load_external_data=False), portable)
        nodes = len(graph.node)
        gc.collect()
        gc.disable()  # the collector's full passes grow with the heap; they are Python's cost, not the passes'
        start = time.perf_counter()
        run_phases(graph, backend.pipeline(plan), backend.context(plan, plan.options.custom_ops == "on"))
        times.append(time.perf_counter() - start)
        gc.enable()
    return statistics.median(times), nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="28,80")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quant", default="int4")
    parser.add_argument("--custom-ops", default="off", choices=["on", "off"])
    args = parser.parse_args()
    print(machine(("onnx",)))
    backend = BACKENDS.get("cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layers in map(int, args.layers.split(",")):
            ckpt = open_checkpoint(checkpoint(Path(tmp), layers))
            portable = Path(tmp) / f"portable-{layers}"
            export(ExportRequest(ckpt, portable, quant="f32", show_progress=False, verify=False))
            options = backend.resolve_options({"custom_ops": args.custom_ops}, args.quant)
            seconds, nodes = pass_seconds(portable, Plan(args.quant, options, ckpt.spec), args.runs)
            rows.append((layers, nodes, seconds))
    print(f"cpu pipeline, --quant {args.quant}, custom_ops={args.custom_ops}, median of {args.runs}")
    print(f"{'layers':>6} {'nodes':>6} {'passes s':>9} {'ms/layer':>9}")
    for layers, nodes, seconds in rows:
        print(f"{layers:>6} {nodes:>6} {seconds:>9.2f} {1000 * seconds / layers:>9.1f}")
    (first_layers, _, first), (last_layers, _, last) = rows[0], rows[-1]
    print(f"time ratio {last / first:.2f} for a depth ratio {last_layers / first_layers:.2f}")


if __name__ == "__main__":
    sys.exit(main())
