"""One run of a model in a process of its own, so the kernel library reads QWDEPLOY_HUGE_PAGES as the test
set it (it reads it once per process):

  resident_child.py MODEL LIBRARY FEEDS.npz OUT.npz

writes the outputs to OUT.npz and prints the KiB of model.onnx.data this process maps and holds resident.
"""

import os
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def mapped_kib(name: str, field: str) -> int:
    """smaps' `field` (Size, Rss) summed over this process's mappings of files called `name`."""
    total, current = 0, ""
    for line in Path(f"/proc/{os.getpid()}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            current = line.split()[-1]
        elif line.startswith(f"{field}:") and current.endswith(name):
            total += int(line.split()[1])
    return total


if __name__ == "__main__":
    model, library, feeds, out = sys.argv[1:]
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    with np.load(feeds) as arrays:
        results = session.run(None, dict(arrays))
    np.savez(out, *results)
    print(mapped_kib("model.onnx.data", "Size"), mapped_kib("model.onnx.data", "Rss"))
