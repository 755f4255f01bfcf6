"""Device backends: each turns the portable ONNX graph into the best graph for one device.

See base.py for the contract and README.md for adding a device. The rows come from
toolkit/devices.py; each backend is imported only when used, so a machine without CUDA (or CANN)
imports qwdeploy and lists the backends all the same.
"""

from __future__ import annotations

from ..toolkit.devices import DEVICES
from ..toolkit.registry import LazyRegistry

BACKENDS = LazyRegistry(
    "backend",
    {d.name: d.backend for d in DEVICES.values() if d.backend},
    planned={d.name: d.planned for d in DEVICES.values() if d.planned},
)
