"""Device backends: each turns the portable ONNX graph into the best graph for one device.

See base.py for the contract. Registered by name, imported only when used, so a machine without
CUDA (or CANN) imports qwdeploy and lists the backends all the same.
"""

from __future__ import annotations

from ..toolkit.registry import LazyRegistry

BACKENDS = LazyRegistry(
    "backend",
    {
        "cpu": "qwdeploy.backends.cpu.backend:BACKEND",
        "cuda": "qwdeploy.backends.cuda.backend:BACKEND",
    },
    planned={"cann": "the Huawei Ascend backend is being built; export --format gguf or onnx without --target "
                     "for now"},
)
