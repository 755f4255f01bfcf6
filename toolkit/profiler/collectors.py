"""(artifact kind, device) → the runtime collector that measures it, from the device table."""

from __future__ import annotations

from ..devices import DEVICES
from ..errors import QwdeployError
from ..registry import LazyRegistry
from .contract import Collector

COLLECTORS = LazyRegistry[Collector](
    "collector", {f"{kind}/{device.name}": entry for device in DEVICES.values()
                  for kind, entry in device.runtimes.items()})


def collector_for(kind: str, device: str) -> Collector:
    """The collector, checked to be runnable here; a one-line error otherwise."""
    key = f"{kind}/{device}"
    if key not in COLLECTORS.names():
        devices = [name.split("/")[1] for name in COLLECTORS.names() if name.startswith(f"{kind}/")]
        planned = f" ({DEVICES[device].planned})" if device in DEVICES and DEVICES[device].planned else ""
        raise QwdeployError(f"{kind} artifacts cannot be profiled on {device}{planned}; devices for {kind}: "
                            f"{', '.join(devices)}")
    collector = COLLECTORS.get(key)
    reason = collector.unavailable_reason()
    if reason:
        raise QwdeployError(f"{device.upper() if device != 'cpu' else device} device not present: {reason}")
    return collector
