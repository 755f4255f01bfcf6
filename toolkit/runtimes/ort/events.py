"""ONNX Runtime's profiler JSON → kernel launches per decode step and an op breakdown."""

from __future__ import annotations

import json
from pathlib import Path

from ...profiler.contract import OpEvent, OpReport

KERNEL_SUFFIX = "_kernel_time"
RUN_EVENT = "model_run"
METHOD = ("ONNX Runtime profiler: kernel events (one per graph node executed) inside each decode step's "
          "model_run")


def decode_report(trace_file: Path, steps: int) -> OpReport:
    """The last `steps` model_run spans are the decode steps; count and time the kernels inside each."""
    events = json.loads(Path(trace_file).read_text())
    runs = sorted((e for e in events if e.get("name") == RUN_EVENT), key=lambda e: e["ts"])[-steps:]
    kernels = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith(KERNEL_SUFFIX)),
                     key=lambda e: e["ts"])
    origin = runs[0]["ts"] if runs else 0
    launches, ops = [], []
    for step, run in enumerate(runs):
        inside = [e for e in kernels if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]]
        launches.append(len(inside))
        ops += [OpEvent(step, e["name"][: -len(KERNEL_SUFFIX)], e.get("args", {}).get("op_name", "?"),
                        (e["ts"] - origin) / 1e6, e["dur"] / 1e6) for e in inside]
    return OpReport(METHOD, launches, ops)
