"""The build driver: CMake configure + build of kernels/ for a BuildTarget, cached by a hash of the sources,
the target and the compilers' versions, so a second build of the same thing is a lookup."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from ..toolkit.atomic import build_once
from ..toolkit.errors import MissingDependencyError, QwdeployError
from ..toolkit.layout import cache_root
from .ort_headers import ort_include
from .schema_header import require_current
from .targets import CROSS_COMPILERS, BuildTarget

SOURCE_DIR = Path(__file__).resolve().parent
SOURCE_SUFFIXES = (".h", ".cc", ".cu", ".cuh", ".txt", ".cmake")
LIBRARY = "libqwdeploy_kernels.so"
TEST_DRIVER = "kernel_test"
AMX_EMULATED_DRIVER = "kernel_test_amx_emulated"  # x86 builds: the driver with amx.cc on emulated tiles
MANIFEST = "build.json"


@dataclass(frozen=True)
class Build:
    target: BuildTarget
    directory: Path

    @property
    def library(self) -> Path:
        return self.directory / LIBRARY

    @property
    def test_driver(self) -> Path:
        return self.directory / TEST_DRIVER

    @property
    def amx_emulated_driver(self) -> Path:
        return self.directory / AMX_EMULATED_DRIVER

    def libraries(self) -> list[Path]:
        """Every file the library is: itself, and for a portable build each ISA variant it loads."""
        return [self.library, *(self.directory / variant_library(name) for name, _ in self.target.variants)]

    def exists(self) -> bool:
        return (self.directory / MANIFEST).is_file() and all(path.is_file() for path in self.libraries())


def variant_library(name: str) -> str:
    return LIBRARY.replace(".so", f".{name}.so")


def sources() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())


def _need(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise MissingDependencyError(f"'{tool}' not found; install it: {install}")
    return path


def _nvcc() -> str:
    found = shutil.which("nvcc") or next((str(p) for p in [Path("/usr/local/cuda/bin/nvcc")] if p.is_file()), None)
    if not found:
        raise MissingDependencyError("'nvcc' not found; install the CUDA toolkit (https://developer.nvidia.com/"
                                     "cuda-downloads) or put /usr/local/cuda/bin on PATH")
    return found


@lru_cache(maxsize=None)
def tool_version(tool: str) -> str:
    """A compiler's version line, for build keys and manifests."""
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    return out[-1] if "nvcc" in tool else (out[0] if out else "unknown")


def toolchain(target: BuildTarget) -> dict[str, str]:
    """The tools this target's build runs, checked to exist; a missing one says what to install."""
    tools = {"cmake": _need("cmake", "apt-get install cmake (or pip install cmake)")}
    if target.cross:
        compiler, package = CROSS_COMPILERS[target.arch]
        tools["cxx"] = _need(compiler, f"apt-get install {package}")
    else:
        tools["cxx"] = _need("g++", "apt-get install g++")
    if target.cuda_archs:
        tools["nvcc"] = _nvcc()
    return tools


def build_key(target: BuildTarget, tools: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sources():
        digest.update(str(path.relative_to(SOURCE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(asdict(target), sort_keys=True).encode())
    for tool in ("cxx", "nvcc"):
        if tool in tools:
            digest.update(tool_version(tools[tool]).encode())
    return digest.hexdigest()[:16]


def planned(target: BuildTarget) -> Build:
    """Where this target's build lives for the current sources and compilers (built or not)."""
    tools = toolchain(target)
    return Build(target, cache_root() / "kernels" / f"{target.name}-{target.arch}-{build_key(target, tools)}")


def build(target: BuildTarget, ort_include_dir: str | Path | None = None, jobs: int | None = None,
          force: bool = False) -> Build:
    """Configures and builds into a temporary folder beside the cache entry, renamed into place when complete."""
    require_current()  # the C++ I/O tables must be the schemas' before anything is built or reused
    result = planned(target)
    if ort_include_dir is not None:
        ort_include(ort_include_dir)  # a wrong folder is an error even when a cached build would do
    if result.exists() and not force:
        return result
    tools = toolchain(target)
    include = ort_include(ort_include_dir)

    def make(build_dir: Path) -> None:
        _cmake(_configure_args(target, tools, include, build_dir), build_dir)
        _cmake([tools["cmake"], "--build", str(build_dir), "-j", str(jobs or os.cpu_count() or 2)], build_dir)
        manifest = {"target": asdict(target), "ort_include": str(include), "library": LIBRARY,
                    "test_driver": TEST_DRIVER, "compiler": tool_version(tools["cxx"]),
                    "nvcc": tool_version(tools["nvcc"]) if "nvcc" in tools else None}
        (build_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))

    build_once(result.directory, result.exists, force, make)
    return result


def _configure_args(target: BuildTarget, tools: dict[str, str], include: Path, build_dir: Path) -> list[str]:
    args = [tools["cmake"], "-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
            f"-DORT_INCLUDE_DIR={include}", f"-DQWD_ARCH_FLAGS={';'.join(target.cpu_flags)}"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if target.variants:
        args.append("-DQWD_VARIANTS=" + ";".join(f"{name}={','.join(flags)}" for name, flags in target.variants))
    if target.toolchain:
        args.append(f"-DCMAKE_TOOLCHAIN_FILE={target.toolchain}")
    if target.cuda_archs:
        args += [f"-DQWD_CUDA_ARCHITECTURES={';'.join(target.cuda_archs)}", f"-DCMAKE_CUDA_COMPILER={tools['nvcc']}"]
    return args


def _cmake(args: list[str], build_dir: Path) -> None:
    log = build_dir / "build.log"
    with log.open("a") as out:
        code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        lines = log.read_text(errors="replace").splitlines()
        errors = [line for line in lines if "error" in line.lower()][:5] or lines[-5:]
        raise QwdeployError("kernel build failed:\n  " + "\n  ".join(errors))
