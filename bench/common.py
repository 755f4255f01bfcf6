"""What the bench scripts share: a checkpoint built out of process, timing a child and its own
peak RSS, medians, and the machine/version line every report starts with."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float


def measure(cmd: list[str]) -> Run:
    """Wall time and the child's own peak RSS (os.wait4 reports that one process's rusage)."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty child must never block
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"exit {code}: {tail[0]}")
    return Run(seconds, usage.ru_maxrss / 1024)  # KiB on Linux


def median(runs: list[Run]) -> Run:
    return Run(statistics.median(r.seconds for r in runs), statistics.median(r.peak_rss_mib for r in runs))


def build_checkpoint(out: Path, arch: str, size: str) -> Path:
    """In a child: Linux carries a parent's peak RSS into its children's ru_maxrss (through fork and
    exec), so the measuring process must stay small for the numbers to mean anything."""
    if not (out / "config.json").is_file():
        code = ("from qwdeploy.toolkit.demo import build_demo_checkpoint; "
                f"build_demo_checkpoint({str(out)!r}, {arch!r}, {size!r}, force=True)")
        subprocess.run([sys.executable, "-c", code], check=True)
    return out


def safetensors_gib(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 2**30


def machine(packages: tuple[str, ...]) -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for package in ("qwdeploy", *packages):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} -")
    return (f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}; "
            + ", ".join(versions))
