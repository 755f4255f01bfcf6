"""How checkpoints and artifacts reach the node that needs them, and the checksum they must match there.

A Parcel travels through Ray's object store (the file or folder packed as an uncompressed tar) or lies on a
path every node mounts. Either way what arrives is hashed and compared before anything reads it.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..atomic import atomic_directory, atomic_file, scratch_directory
from ..errors import ArtifactError
from .state import digest, fingerprint


@dataclass(frozen=True)
class Parcel:
    name: str  # file or folder name
    check: str  # what it must hash to on arrival
    blob: Any = None  # a Ray ObjectRef of pack()'s bytes
    path: Path | None = None  # instead: where every node reads it
    light: bool = False  # check by state.fingerprint, not every byte: a checkpoint on a shared path


def pack(path: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


def _check(path: Path, expected: str, light: bool) -> None:
    got = fingerprint(path) if light else digest(path)
    if got != expected:
        raise ArtifactError(f"arrived with sha256 {got[:16]}… instead of {expected[:16]}…: changed or damaged on the "
                            "way; the cell fails rather than measure other bytes", path)


def _place(got: Path, out: Path) -> None:
    if got.is_file():
        with atomic_file(out) as tmp:
            os.replace(got, tmp)
        return
    with atomic_directory(out, force=True) as tmp:
        for child in got.iterdir():
            os.replace(child, tmp / child.name)


def unpack(blob: bytes, folder: Path, name: str, sha256: str) -> Path:
    """pack()'s bytes placed whole as folder/name once their content matches `sha256`."""
    out = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    with scratch_directory(out) as tmp:
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(tmp, filter="data")
        if not (tmp / name).exists():
            raise ArtifactError(f"arrived without {name}", out)
        _check(tmp / name, sha256, light=False)
        _place(tmp / name, out)
    return out


@contextmanager
def arrived(parcel: Parcel) -> Iterator[Path]:
    """The parcel as a local path for the length of the block, its checksum checked first."""
    if parcel.path is not None:
        _check(parcel.path, parcel.check, parcel.light)
        yield parcel.path
        return
    import ray

    # A folder of this task's own: tasks on one node never share (or delete) each other's copies.
    folder = Path(tempfile.mkdtemp(prefix="qwdeploy-sweep-"))
    try:
        yield unpack(ray.get(parcel.blob), folder, parcel.name, parcel.check)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
