"""The exports: qwdeploy's and the anchors', each a list of commands timed as whole processes.

A row's wall time is the sum of its commands and its peak RSS the largest of theirs (llama.cpp's
converter, then its quantizer, for the types the converter cannot write). Rows in one `group` make
the same kind of artifact and are compared with each other.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common import QWDEPLOY, Run, disk_bytes, measure

QUANTIZE = ("import sys, llama_cpp as l; p = l.llama_model_quantize_default_params(); p.ftype = int(sys.argv[3]); "
            "p.nthread = 2; sys.exit(l.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))")
LLAMA_FTYPE = {"q4_0": 2, "q8_0": 7, "q4_k_m": 15}  # llama.h's LLAMA_FTYPE_MOSTLY_*


@dataclass(frozen=True)
class Ctx:
    checkpoint: Path
    out: Path  # the artifact: a file (GGUF) or a folder
    python: str  # the row's environment's interpreter
    tmp: Path  # scratch space, emptied after the row
    converter: Path | None = None  # llama.cpp's convert_hf_to_gguf.py


Steps = Callable[[Ctx], list[list[str]]]


@dataclass(frozen=True)
class Export:
    name: str
    tool: str  # qwdeploy, llama.cpp, genai, optimum, openvino
    group: str  # rows that make the same kind of artifact
    env: str | None  # bench/envs.py's environment; None: the project's own
    artifact: str  # file or folder name
    steps: Steps
    bytes_per_param: float  # predicts the artifact's size, to check the disk before starting
    rss_per_param: float = 0.0  # predicts the peak RSS (bytes per parameter); 0: flat, never the limit
    quick: bool = True  # part of --quick


def _qwdeploy_gguf(quant: str) -> Steps:
    return lambda c: [[QWDEPLOY, "export", str(c.checkpoint), "--format", "gguf", "--quant", quant, "-o", str(c.out),
                       "--no-verify", "--force"]]


def _qwdeploy_onnx(quant: str) -> Steps:
    return lambda c: [[QWDEPLOY, "export", str(c.checkpoint), "--format", "onnx", "--target", "cpu", "--quant", quant,
                       "-o", str(c.out), "--no-verify", "--force"]]


def _converter(outtype: str) -> Steps:
    return lambda c: [[c.python, str(c.converter), str(c.checkpoint), "--outtype", outtype, "--outfile", str(c.out)]]


def _converter_quantized(quant: str) -> Steps:
    def steps(c: Ctx) -> list[list[str]]:
        f16 = c.tmp / "f16.gguf"
        return [[c.python, str(c.converter), str(c.checkpoint), "--outtype", "f16", "--outfile", str(f16)],
                [sys.executable, "-c", QUANTIZE, str(f16), str(c.out), str(LLAMA_FTYPE[quant])]]
    return steps


def _genai(precision: str) -> Steps:
    return lambda c: [[c.python, "-m", "onnxruntime_genai.models.builder", "-i", str(c.checkpoint), "-o", str(c.out),
                       "-p", precision, "-e", "cpu", "-c", str(c.tmp / "cache")]]


def _optimum(c: Ctx) -> list[list[str]]:
    return [[c.python, "-m", "optimum.exporters.onnx", "--model", str(c.checkpoint), "--task",
             "text-generation-with-past", str(c.out)]]


def _openvino(c: Ctx) -> list[list[str]]:
    cli = str(Path(c.python).parent / "optimum-cli")
    return [[cli, "export", "openvino", "--model", str(c.checkpoint), "--task", "text-generation-with-past",
             "--weight-format", "int4", str(c.out)]]


EXPORTS = (
    Export("qwdeploy GGUF f16", "qwdeploy", "GGUF f16", None, "qwdeploy-f16.gguf", _qwdeploy_gguf("f16"), 2.0),
    Export("qwdeploy GGUF q8_0", "qwdeploy", "GGUF q8_0", None, "qwdeploy-q8_0.gguf", _qwdeploy_gguf("q8_0"), 1.07,
           quick=False),
    Export("qwdeploy GGUF q4_0", "qwdeploy", "GGUF q4_0", None, "qwdeploy-q4_0.gguf", _qwdeploy_gguf("q4_0"), 0.7),
    Export("qwdeploy GGUF q4_k_m", "qwdeploy", "GGUF q4_k_m", None, "qwdeploy-q4_k_m.gguf", _qwdeploy_gguf("q4_k_m"),
           0.75, quick=False),
    Export("qwdeploy ONNX fp32", "qwdeploy", "ONNX fp32", None, "qwdeploy-fp32", _qwdeploy_onnx("f32"), 4.0,
           quick=False),
    Export("qwdeploy ONNX CPU int4", "qwdeploy", "int4", None, "qwdeploy-int4", _qwdeploy_onnx("int4"), 0.7),
    Export("llama.cpp convert f16", "llama.cpp", "GGUF f16", "llamacpp", "llama-f16.gguf", _converter("f16"), 2.0, 2.8),
    Export("llama.cpp convert q8_0", "llama.cpp", "GGUF q8_0", "llamacpp", "llama-q8_0.gguf", _converter("q8_0"),
           1.07, 2.8, quick=False),
    Export("llama.cpp convert f16 + quantize q4_0", "llama.cpp", "GGUF q4_0", "llamacpp", "llama-q4_0.gguf",
           _converter_quantized("q4_0"), 2.7, 2.8),
    Export("llama.cpp convert f16 + quantize q4_k_m", "llama.cpp", "GGUF q4_k_m", "llamacpp", "llama-q4_k_m.gguf",
           _converter_quantized("q4_k_m"), 2.75, 2.8, quick=False),
    Export("genai builder fp32", "genai", "ONNX fp32", "genai", "genai-fp32", _genai("fp32"), 4.0, 6.0, quick=False),
    Export("optimum ONNX fp32", "optimum", "ONNX fp32", "optimum", "optimum-fp32", _optimum, 4.0, 11.5, quick=False),
    Export("genai builder int4", "genai", "int4", "genai", "genai-int4", _genai("int4"), 0.7, 9.0),
    Export("optimum-intel OpenVINO int4", "openvino", "int4", "openvino", "openvino-int4", _openvino, 0.8, 12.0),
)


@dataclass
class ExportResult:
    export: Export
    shape: str
    runs: list[Run]
    size_bytes: int = 0
    skipped: str = ""  # why it did not run (or stopped)

    @property
    def artifact_ok(self) -> bool:
        return not self.skipped and bool(self.runs)


def run_export(export: Export, ctx: Ctx) -> Run:
    """One timed export: its commands in turn, each a fresh process; a failure raises RuntimeError."""
    remove(ctx.out)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    try:
        runs = [measure(cmd) for cmd in export.steps(ctx)]
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    if not ctx.out.exists():
        raise RuntimeError(f"finished but wrote no {ctx.out.name}")
    return Run(sum(r.seconds for r in runs), max(r.peak_rss_mib for r in runs))


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def precheck(export: Export, parameters: int, out_root: Path, memory_bytes: int) -> str:
    """Why this export must not start at this size ('' when it may): the disk or the memory would not hold it."""
    need = export.bytes_per_param * parameters
    free = disk_bytes(out_root)
    if need > free - 2 * 2**30:
        return f"stopped: needs ~{need / 2**30:.0f} GiB of disk, {free / 2**30:.0f} GiB free"
    rss = export.rss_per_param * parameters
    if rss and rss > 0.85 * memory_bytes:
        return f"stopped: peak RSS would be ~{rss / 2**30:.0f} GiB on a {memory_bytes / 2**30:.0f} GiB machine"
    return ""


def quick_exports() -> tuple[Export, ...]:
    return tuple(e for e in EXPORTS if e.quick)


def by_name(name: str) -> Export:
    return next(e for e in EXPORTS if e.name == name)
