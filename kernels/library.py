"""Finding a built kernel library, for backends that register it with ONNX Runtime:

    options.register_custom_ops_library(str(library_path(target="host")))
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from pathlib import Path

from ..toolkit.errors import QwdeployError
from .build import MANIFEST, Build, build, planned
from ..toolkit.layout import cache_root
from .targets import resolve_target


def library_path(target: str = "host", cuda_arch: str | None = None, build_if_missing: bool = False) -> Path:
    """The custom-op library for `target` ("host" or a profile) built from the current sources.

    Raises QwdeployError naming the command to run when it is not built (unless build_if_missing)."""
    resolved = resolve_target(target, cuda_arch)
    found = planned(resolved)
    if found.exists():
        return found.library
    if build_if_missing:
        return build(resolved).library
    flag = f" --cuda-arch {cuda_arch}" if cuda_arch else ""
    raise QwdeployError(f"kernels for {resolved.describe()} are not built for the current sources; run "
                        f"`qwdeploy kernels build --target {target}{flag}`")


def loaded_variant(library: Path) -> str | None:
    """The ISA build a portable library hands registration to on this CPU; None for a single-ISA library.
    Ask only after ONNX Runtime has loaded the library: loading one built for another CPU could fault."""
    handle = ctypes.CDLL(str(library))
    pick = getattr(handle, "qwdeploy_kernels_variant", None)
    if pick is None:
        return None
    pick.restype = ctypes.c_char_p
    name = pick()
    return name.decode() if name else None


def current_build(target: str = "host", cuda_arch: str | None = None) -> Build:
    """The Build the current sources would produce for target (check .exists())."""
    return planned(resolve_target(target, cuda_arch))


@dataclass(frozen=True)
class CachedBuild:
    directory: Path
    manifest: dict


def cached_builds() -> list[CachedBuild]:
    """Every complete build in the cache, current or stale."""
    root = cache_root() / "kernels"
    found = []
    for manifest in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        found.append(CachedBuild(manifest.parent, json.loads(manifest.read_text())))
    return found
