"""(artifact kind, device) → the backend module that measures it, imported only when used."""

from __future__ import annotations

from ..errors import QwdeployError
from ..registry import LazyRegistry
from .contract import Collector

DEVICES = ("cpu", "cuda", "cann")

# Collectors live with their backend; one row per (kind, device) that can be measured.
COLLECTORS = LazyRegistry[Collector](
    "collector",
    {
        "onnx/cpu": "qwdeploy.backends.cpu.collector:COLLECTOR",
        "onnx/cuda": "qwdeploy.backends.cuda.collector:COLLECTOR",
        "gguf/cpu": "qwdeploy.backends.llamacpp.collector:COLLECTOR",
        "gguf/cuda": "qwdeploy.backends.llamacpp.collector:CUDA_COLLECTOR",
        "hf/cpu": "qwdeploy.backends.transformers.collector:COLLECTOR",
        "hf/cuda": "qwdeploy.backends.transformers.collector:CUDA_COLLECTOR",
    },
)


def collector_for(kind: str, device: str) -> Collector:
    """The collector, checked to be runnable here; a one-line error otherwise."""
    key = f"{kind}/{device}"
    if key not in COLLECTORS.names():
        devices = [name.split("/")[1] for name in COLLECTORS.names() if name.startswith(f"{kind}/")]
        raise QwdeployError(f"{kind} artifacts cannot be profiled on {device}; devices for {kind}: {', '.join(devices)}")
    try:
        collector = COLLECTORS.get(key)
    except ImportError as exc:
        raise QwdeployError(f"the {device} collector for {kind} artifacts cannot load: needs {exc.name or exc}") from None
    reason = collector.unavailable_reason()
    if reason:
        raise QwdeployError(f"{device.upper() if device != 'cpu' else device} device not present: {reason}")
    return collector
