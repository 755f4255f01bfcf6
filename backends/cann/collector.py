"""Profiler collector: an ONNX folder on onnxruntime-cann's CANN execution provider (an Ascend NPU)."""

from __future__ import annotations

from ...toolkit.runtimes.ort.session import OrtCollector
from .backend import PROVIDER

COLLECTOR = OrtCollector("cann", PROVIDER)
