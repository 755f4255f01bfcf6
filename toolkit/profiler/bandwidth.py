"""This machine's memory read bandwidth, measured the way decode reads weights, and cached.

Decode streams every weight once per token on all of the runtime's threads and writes almost
nothing, so the ceiling is what every core reading its own slice of an array far beyond the
last-level cache achieves together. A single-threaded copy (read + write) understates it by a
third or more on servers, which made decode look closer to the limit than it is.
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..layout import cache_root

ARRAY_BYTES = 512 * 2**20  # far beyond any last-level cache, so the reads stream from DRAM
REPEATS = 5
CACHE_FILE = "bandwidth.json"
METHOD = "read, all threads"  # part of the cache key: values measured another way are not reused


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
    """Best of REPEATS passes over ARRAY_BYTES, each thread OR-reducing its own slice (bytes/s): the
    reduction is a vector instruction per load, so the loads, not the arithmetic, set the pace, and
    numpy releases the GIL inside it."""
    threads = os.cpu_count() or 1
    words = np.full(ARRAY_BYTES // 8, 0x0101010101010101, dtype=np.uint64)  # written: every page is resident
    slices = np.array_split(words, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(REPEATS):
            start = time.perf_counter()
            list(pool.map(np.bitwise_or.reduce, slices))
            best = min(best, time.perf_counter() - start)
    return ARRAY_BYTES / best


def host_bandwidth() -> float:
    """Cached per host in cache_root()/bandwidth.json."""
    path, key = cache_root() / CACHE_FILE, _host_key()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached, dict) and isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    value = measure_bandwidth()
    cached = cached if isinstance(cached, dict) else {}
    cached[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=2))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return value
