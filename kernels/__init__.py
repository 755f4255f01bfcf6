"""qwdeploy's fused kernels: the `qwdeploy` custom-op domain for ONNX Runtime, built per target.

Importing this package is cheap; the build machinery loads on first use.
"""

from __future__ import annotations

from pathlib import Path

from .schemas import DOMAIN, SCHEMAS


def library_path(target: str = "host", cuda_arch: str | None = None, build_if_missing: bool = False) -> Path:
    """Path of the built custom-op library for target ("host" or a device profile); see kernels/library.py."""
    from .library import library_path as find

    return find(target, cuda_arch, build_if_missing)


__all__ = ["DOMAIN", "SCHEMAS", "library_path"]
