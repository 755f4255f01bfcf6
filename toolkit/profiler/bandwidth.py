"""The read bandwidth of the memory a device decodes from, measured the way decode reads weights.

Decode streams every weight once per token on all of the runtime's threads and writes almost
nothing, so the ceiling is what every core reading its own slice of an array far beyond the
last-level cache achieves together. A single-threaded copy (read + write) understates it by a
third or more on servers, which made decode look closer to the limit than it is. On a GPU the
weights live in its own memory: ONNX Runtime's CUDA provider reduces a tensor that lives there.
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..layout import cache_root

ARRAY_BYTES = 512 * 2**20  # far beyond any last-level cache, so the reads stream from DRAM
GPU_BYTES = 2**31  # far beyond any GPU's L2, and long enough that a run's launch overhead is noise
GPU_RUNS = 10
REPEATS = 5
CACHE_FILE = "bandwidth.json"
# A shared machine's bandwidth moves with its neighbours (two threads of a 2-core VM read 37 to 79 GB/s
# within one hour): a measurement older than this is taken again rather than trusted.
MAX_AGE_S = 600.0
METHOD = "read, all threads, vector sum"  # part of the cache key: values measured another way are not reused


def _host_key() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}|{platform.machine()}|{cpu or platform.processor()}|{os.cpu_count()}|{METHOD}"


def measure_bandwidth() -> float:
    """Best of REPEATS passes over ARRAY_BYTES read on every thread (bytes/s). torch's sum streams with
    vector loads on all of its threads, as decode's kernels do; numpy's reductions on a thread pool, the
    fallback without torch, reach less (29 against 34 GB/s on a 2-core Zen4 VM)."""
    threads = os.cpu_count() or 1
    words = np.full(ARRAY_BYTES // 8, 0x0101010101010101, dtype=np.uint64)  # written: every page is resident
    try:
        import torch
    except ImportError:
        return _numpy_read(words, threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        floats = torch.from_numpy(words.view(np.float32))
        return ARRAY_BYTES / _best(lambda: floats.sum())
    finally:
        torch.set_num_threads(previous)


def _numpy_read(words: np.ndarray, threads: int) -> float:
    """Each thread OR-reduces its own slice: a vector instruction per load, and numpy releases the GIL."""
    slices = np.array_split(words, threads)
    with ThreadPoolExecutor(threads) as pool:
        return ARRAY_BYTES / _best(lambda: list(pool.map(np.bitwise_or.reduce, slices)))


def _best(read: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - start)
    return best


def _fresh(entry: object) -> float | None:
    """A cache entry's bytes/s if it was measured less than MAX_AGE_S ago, else None."""
    if not isinstance(entry, dict):
        return None  # absent, or written before entries carried their time
    value, measured = entry.get("bytes_per_s"), entry.get("measured")
    if not isinstance(value, (int, float)) or not isinstance(measured, (int, float)):
        return None
    return float(value) if 0 <= time.time() - measured < MAX_AGE_S else None


def host_bandwidth() -> float:
    """Cached per host in cache_root()/bandwidth.json for MAX_AGE_S seconds."""
    path, key = cache_root() / CACHE_FILE, _host_key()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    cached = cached if isinstance(cached, dict) else {}
    fresh = _fresh(cached.get(key))
    if fresh is not None:
        return fresh
    value = measure_bandwidth()
    cached[key] = {"bytes_per_s": value, "measured": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=2))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return value


def cuda_bandwidth() -> float | None:
    """Best of REPEATS times GPU_RUNS ReduceSum passes over GPU_BYTES of float16 allocated on the GPU (never
    copied from the host), run through ONNX Runtime's CUDA provider; None where that provider is absent."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)], "read",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [])])
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
        binding = session.io_binding()
        x = ort.OrtValue.ortvalue_from_shape_and_type([GPU_BYTES // 2], np.float16, "cuda")
        binding.bind_ortvalue_input("x", x)
        binding.bind_output("y", "cuda")
        session.run_with_iobinding(binding)  # the first run picks kernels and sizes the arena
        return GPU_BYTES * GPU_RUNS / _best(lambda: [session.run_with_iobinding(binding) for _ in range(GPU_RUNS)])
    except Exception:  # noqa: BLE001 - a GPU that cannot run this (too little free memory, ...) costs the roofline only
        return None


# The memory each device decodes from, by device name: host memory (cached per host), the GPU's own.
MEASURES: dict[str, Callable[[], float | None]] = {"cpu": host_bandwidth, "cuda": cuda_bandwidth}


def device_bandwidth(device: str) -> float | None:
    """What a decode step on `device` can read per second; None where it cannot be measured here (the
    profile then has no roofline)."""
    measure = MEASURES.get(device)
    return measure() if measure else None
