"""Where the ONNX Runtime C/C++ headers come from: a folder the user names, or Debian's
libonnxruntime-dev unpacked into qwdeploy's cache (the onnxruntime wheel ships no headers)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..toolkit.atomic import build_once
from ..toolkit.errors import MissingDependencyError
from ..toolkit.layout import cache_root

ENV_VAR = "QWDEPLOY_ORT_INCLUDE"
DEBIAN_SUITE = "trixie"  # carries libonnxruntime-dev 1.21, whose headers build libraries that load in newer ORT
HEADER = "onnxruntime_cxx_api.h"
FETCH_TIMEOUT_S = 120  # per apt/dpkg step
HOW = (f"pass --ort-include DIR (or set {ENV_VAR}) to a folder holding {HEADER}, e.g. from an ONNX Runtime "
       "release archive's include/ folder, or let qwdeploy fetch Debian's libonnxruntime-dev (needs apt-get)")


def ort_include(explicit: str | Path | None = None, fetch: bool = True) -> Path:
    """The header folder: explicit, else $QWDEPLOY_ORT_INCLUDE, else the cached (or freshly fetched) Debian copy."""
    for chosen, source in ((explicit, "--ort-include"), (os.environ.get(ENV_VAR), ENV_VAR)):
        if chosen:
            folder = Path(chosen).expanduser()
            if not (folder / HEADER).is_file():
                raise MissingDependencyError(f"{source} points at a folder without {HEADER}", folder)
            return folder
    cached = _cache_dir() / "usr" / "include" / "onnxruntime"
    if (cached / HEADER).is_file():
        return cached
    if not fetch:
        raise MissingDependencyError(f"no ONNX Runtime headers; {HOW}")
    return _fetch_debian_headers()


def _cache_dir() -> Path:
    return cache_root() / "onnxruntime-headers" / DEBIAN_SUITE


def _debian_mirror() -> str:
    """The mirror this machine's apt already uses, so the fetch works wherever apt-get does."""
    patterns = ((Path("/etc/apt/sources.list.d/debian.sources"), r"^URIs:\s*(\S+)"),  # deb822 format
                (Path("/etc/apt/sources.list"), r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)"))  # one-line format
    for config, pattern in patterns:
        if config.is_file():
            for uri in re.findall(pattern, config.read_text(), flags=re.MULTILINE):
                if "security" not in uri:
                    return uri
    return "http://deb.debian.org/debian"


def _step(command: list[str], cwd: Path) -> None:
    """One step of the fetch; a failure or a stalled network is the fetch's one-line error, never a traceback
    (an export asks for the headers on its way, not only `kernels build`)."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MissingDependencyError(f"fetching Debian's libonnxruntime-dev: {command[0]} took over "
                                     f"{FETCH_TIMEOUT_S} s; {HOW}") from None
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingDependencyError(f"fetching Debian's libonnxruntime-dev failed ({tail}); {HOW}")


def _fetch_debian_headers() -> Path:
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        raise MissingDependencyError(f"no ONNX Runtime headers and no apt-get to fetch them; {HOW}")
    target = _cache_dir()
    headers = target / "usr" / "include" / "onnxruntime"

    def fetch(staging: Path) -> None:
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            work_dir = Path(work)
            (work_dir / "lists" / "partial").mkdir(parents=True)
            sources = work_dir / "sources.list"
            sources.write_text(f"deb {_debian_mirror()} {DEBIAN_SUITE} main\n")
            # A private sources list and state dir: the system's apt configuration stays untouched.
            apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
                   "-o", f"Dir::State::Lists={work_dir / 'lists'}", "-o", "APT::Sandbox::User=root"]
            for step in (["update"], ["download", "libonnxruntime-dev"]):
                _step(apt + step, work_dir)
            (deb,) = work_dir.glob("libonnxruntime-dev_*.deb")
            _step(["dpkg", "-x", str(deb), str(staging)], work_dir)

    # Parallel builds (test workers, two exports) fetch once: the others wait and find the headers there.
    build_once(target, lambda: (headers / HEADER).is_file(), False, fetch)
    return headers
