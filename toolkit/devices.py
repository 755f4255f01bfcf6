"""Every device qwdeploy targets, one row each: its graph backend and the runtimes that run artifacts on it.

The only list of device names: `export --target`, `profile --device`, a profile's deploy.backend and
the profiler's collectors all read it. Entries are "module:attribute" strings, imported when used,
so a machine without CUDA or CANN imports qwdeploy all the same. Adding a device is one row here and
one folder under backends/ (backends/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ARTIFACT_KINDS = ("onnx", "gguf", "hf")  # what the profiler measures: an ONNX folder, a GGUF file, a checkpoint


@dataclass(frozen=True)
class Device:
    name: str
    accelerator: str  # the [accelerator] kind a device profile deploying here must name
    backend: str | None  # its graph backend (`export --target NAME`)
    runtimes: dict[str, str] = field(default_factory=dict)  # artifact kind → its profiler collector
    planned: str = ""  # announced but not built yet: what to do meanwhile


_LLAMA = "qwdeploy.toolkit.runtimes.llamacpp.collector"
_TRANSFORMERS = "qwdeploy.toolkit.runtimes.transformers.collector"

DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("cpu", "none", "qwdeploy.backends.cpu.backend:BACKEND",
           {"onnx": "qwdeploy.backends.cpu.collector:COLLECTOR", "gguf": f"{_LLAMA}:COLLECTOR",
            "hf": f"{_TRANSFORMERS}:COLLECTOR"}),
    Device("cuda", "cuda", "qwdeploy.backends.cuda.backend:BACKEND",
           {"onnx": "qwdeploy.backends.cuda.collector:COLLECTOR", "gguf": f"{_LLAMA}:CUDA_COLLECTOR",
            "hf": f"{_TRANSFORMERS}:CUDA_COLLECTOR"}),
    Device("cann", "ascend", "qwdeploy.backends.cann.backend:BACKEND",
           {"onnx": "qwdeploy.backends.cann.collector:COLLECTOR"}),
)}
