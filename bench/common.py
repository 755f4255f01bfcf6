"""What the bench scripts share: timing a child and its own peak RSS, medians, sizes, and the machine."""

from __future__ import annotations

import functools
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


@functools.cache
def _first_cpu() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (read once: it repeats them for every CPU), or {}."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if not name.strip():
                break  # the blank line after the first CPU
            fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpuinfo(field: str) -> str:
    return _first_cpu().get(field, "")


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set(_cpuinfo("flags").split())


# AMD's core generation by CPU family, where the family tells it. Cloud VMs often name every EPYC
# "AMD EPYC", and a Zen 5 runs twice the int8 products per cycle of a Zen 4: results must say which ran.
AMD_CORES = {23: "Zen/Zen 2", 25: "Zen 3", 26: "Zen 5"}


def cpu_core() -> str:
    """e.g. 'family 26 model 2, Zen 5': the numbers always, the generation where they tell it."""
    family, model = _cpuinfo("cpu family"), _cpuinfo("model")
    if not family.isdigit():
        return ""
    core = ""
    if _cpuinfo("vendor_id") == "AuthenticAMD":
        # Family 25 holds Zen 3 and Zen 4; of the two only Zen 4 has AVX-512.
        core = "Zen 4" if int(family) == 25 and "avx512f" in cpu_flags() else AMD_CORES.get(int(family), "")
    return f"family {family} model {model}" + (f", {core}" if core else "")


def cpu_slug() -> str:
    return re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")[:40] or "cpu"


def machine(packages: tuple[str, ...]) -> str:
    versions = []
    for package in ("qwdeploy", *packages):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} -")
    core = cpu_core()
    return (f"{cpu_model()}{f' ({core})' if core else ''}, {os.cpu_count()} cores, {memory_bytes() / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}; " + ", ".join(versions))
