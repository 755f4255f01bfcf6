"""Checkpoint → artifact converters, one sub-package per format, registered by name.

An exporter module provides:
  unsupported_reason(spec: ModelSpec) -> str | None   # None when the model can be exported
  export(request: ExportRequest) -> ExportResult       # streams; writes atomically
"""

from __future__ import annotations

from ..toolkit.registry import LazyRegistry

EXPORTERS = LazyRegistry(
    "export format",
    {
        "gguf": "qwdeploy.exporters.gguf.exporter",
        "onnx": "qwdeploy.exporters.onnx.exporter",
    },
)
