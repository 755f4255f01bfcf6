"""Export the ~0.5B Qwen-shaped checkpoint to ONNX with qwdeploy and with the tools people use today.

    python bench/onnx_export.py [--runs 3] [--quant f32|int4] [--optimum-python PY] [--genai-python PY]

Each tool runs in a child process, interleaved run by run so drift hits all alike; wall time and
peak RSS are medians, printed with ratios against qwdeploy. Tools that are not installed are
reported as skipped. onnxruntime-genai's builder needs transformers 5 and optimum needs 4.57, so
point --genai-python / --optimum-python at other environments' interpreters. `--quant int4` compares
the CPU int4 exports (qwdeploy `--target cpu`, the genai builder's `-p int4 -e cpu`); optimum has none.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common import Run, build_checkpoint, machine, measure, median, safetensors_gib

Command = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    python: str
    probe: str  # a module the tool needs; missing → skipped
    command: Command


def _tools(args: argparse.Namespace) -> list[Tool]:
    int4 = args.quant == "int4"
    ours = ["--target", "cpu", "--quant", "int4"] if int4 else ["--quant", "f32"]
    tools = [
        Tool("qwdeploy", sys.executable, "qwdeploy.exporters.onnx.exporter",
             lambda ckpt, out: ["qwdeploy", "export", str(ckpt), "--format", "onnx", "-o", str(out), *ours]),
        Tool("onnxruntime-genai builder", args.genai_python, "onnxruntime_genai.models.builder",
             lambda ckpt, out: [args.genai_python, "-m", "onnxruntime_genai.models.builder", "-i", str(ckpt),
                                "-o", str(out), "-p", args.quant.replace("f32", "fp32"), "-e", "cpu"]),
    ]
    if not int4:
        tools.insert(1, Tool("optimum", args.optimum_python, "optimum.exporters.onnx",
                             lambda ckpt, out: [args.optimum_python, "-m", "optimum.exporters.onnx", "--model",
                                                str(ckpt), "--task", "text-generation-with-past", str(out)]))
    return tools


def _missing(tool: Tool) -> str | None:
    probe = subprocess.run([tool.python, "-c", f"import {tool.probe}"], capture_output=True, text=True)
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["import failed"])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quant", choices=("f32", "int4"), default="f32")
    parser.add_argument("--arch", default="qwen2")
    parser.add_argument("--size", default="small")
    parser.add_argument("--optimum-python", default=sys.executable)
    parser.add_argument("--genai-python", default=sys.executable)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qwdeploy" / "bench")
    args = parser.parse_args()

    print(machine(("onnx", "onnxruntime", "onnxruntime-genai", "torch", "transformers", "optimum", "optimum-onnx")))
    checkpoint = build_checkpoint(args.work / f"{args.arch}-{args.size}", args.arch, args.size)
    target = "CPU int4" if args.quant == "int4" else "fp32 (optimum's only CPU dtype)"
    print(f"checkpoint: {args.arch}/{args.size}, {safetensors_gib(checkpoint):.2f} GiB bf16 safetensors; export to "
          f"{target}; median of {args.runs} interleaved runs\n")
    tools = []
    for tool in _tools(args):
        missing = _missing(tool)
        if missing:
            print(f"{tool.name:28s} skipped: not installed ({missing})")
        else:
            tools.append(tool)
    runs: dict[str, list[Run]] = {tool.name: [] for tool in tools}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="qwdeploy-bench-") as tmp:
        for _ in range(args.runs):
            for tool in tools:
                if tool.name in failed:
                    continue
                out = Path(tmp) / tool.name.replace(" ", "-")
                try:
                    runs[tool.name].append(measure(tool.command(checkpoint, out)))
                except RuntimeError as exc:
                    failed[tool.name] = str(exc)
                shutil.rmtree(out, ignore_errors=True)
    results = {name: median(r) for name, r in runs.items() if name not in failed}
    for name, reason in failed.items():
        print(f"{name:28s} failed: {reason}")
    ours = results.get("qwdeploy")
    for name, run in results.items():
        ratio = "" if not ours or name == "qwdeploy" else (
            f"   qwdeploy/this: time x{ours.seconds / run.seconds:.2f}, RSS x{ours.peak_rss_mib / run.peak_rss_mib:.2f}")
        print(f"{name:28s} {run.seconds:8.1f} s  {run.peak_rss_mib:8.0f} MiB peak RSS{ratio}")


if __name__ == "__main__":
    main()
