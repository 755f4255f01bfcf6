"""Profiler collector: an ONNX folder on ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from ...toolkit.runtimes.ort.session import OrtCollector

COLLECTOR = OrtCollector("cpu", "CPUExecutionProvider")
