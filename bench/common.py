"""What the bench scripts share: timing a child and its own peak RSS, medians, sizes, and the machine."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# The CLI of the environment running the bench, found beside its interpreter first: an unactivated venv's
# `.venv/bin/python bench/run.py` measures that venv's qwdeploy, not whatever PATH holds (or nothing); a
# user-site install keeps its script elsewhere on PATH.
QWDEPLOY = shutil.which("qwdeploy", path=str(Path(sys.executable).parent)) or "qwdeploy"


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float


def measure(cmd: list[str], timeout: float | None = None) -> Run:
    """Wall time and the child's own peak RSS (os.wait4 reports that one process's rusage)."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child must never block
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            os.kill(proc.pid, signal.SIGKILL)  # not proc.kill(): its poll() could reap the child first

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        if timer:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if killed.is_set():
            raise RuntimeError(f"timed out after {timeout:.0f} s")
        if code != 0:
            raise RuntimeError(f"exit {code}: {_tail(log)}")
    return Run(seconds, usage.ru_maxrss / 1024)  # KiB on Linux


def _tail(log) -> str:
    log.seek(0)
    lines = [line for line in log.read().decode(errors="replace").strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no output"


def median(runs: list[Run]) -> Run:
    return Run(statistics.median(r.seconds for r in runs), statistics.median(r.peak_rss_mib for r in runs))


def size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def disk_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_slug() -> str:
    return re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")[:40] or "cpu"


def machine(packages: tuple[str, ...]) -> str:
    versions = []
    for package in ("qwdeploy", *packages):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} -")
    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory_bytes() / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}; " + ", ".join(versions))
