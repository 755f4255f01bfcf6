"""sha256 of every artifact qwdeploy writes, computed while writing and checked before use.

An ONNX folder carries `checksums.sha256` (the format `sha256sum -c` reads). A GGUF file carries its
own digest in the string key `qwdeploy.sha256`: the digest covers the whole file with those 64
characters read as zeros, so the file needs no sidecar and llama.cpp ignores the key.
"""

from __future__ import annotations

import hashlib
import queue
import struct
import threading
from pathlib import Path
from typing import BinaryIO

from .errors import ArtifactError
from .layout import CHECKSUMS_FILE

GGUF_KEY = "qwdeploy.sha256"
PLACEHOLDER = b"0" * 64
GGUF_STRING = 8  # GGUFValueType.STRING
# The key as GGUF stores it: u64 length, name, u32 value type, u64 string length, then the 64 characters.
GGUF_KEY_BYTES = struct.pack("<Q", len(GGUF_KEY)) + GGUF_KEY.encode() + struct.pack("<IQ", GGUF_STRING, 64)
HEADER_SEARCH_BYTES = 64 * 2**10  # our writer puts the key right after general.architecture
BLOCK = 8 * 2**20


def file_sha256(path: Path) -> str:
    return _hash_file(path).hexdigest()


def _hash_file(path: Path, hasher=None, skip: tuple[int, int] | None = None):
    """sha256 of a file, reading `skip` = (offset, length) as the placeholder's zeros."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as f:
        position = 0
        while block := f.read(BLOCK):
            if skip is not None and position < skip[0] + skip[1] and skip[0] < position + len(block):
                block = bytearray(block)
                start = max(skip[0] - position, 0)
                end = min(skip[0] + skip[1] - position, len(block))
                block[start:end] = PLACEHOLDER[start + position - skip[0]:end + position - skip[0]]
            hasher.update(block)
            position += len(block)
    return hasher


class BackgroundHash:
    """sha256 fed from a writer, computed on a worker thread (hashlib releases the GIL on large
    buffers), so hashing overlaps the writer's own casting and writing. Buffers given to `update`
    must not change afterwards."""

    def __init__(self, hasher=None, depth: int = 2):
        self._hasher = hasher or hashlib.sha256()
        self._pending: queue.Queue = queue.Queue(maxsize=depth)  # bounds the memory held for hashing
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._pending.get()) is not None:
            self._hasher.update(data)

    def update(self, data) -> None:
        self._pending.put(data)

    def hexdigest(self) -> str:
        if self._thread.is_alive():
            self._pending.put(None)
            self._thread.join()
        return self._hasher.hexdigest()


def seal_folder(folder: Path, known: dict[str, str] | None = None) -> None:
    """Write CHECKSUMS_FILE for every file under `folder`; `known` maps names to digests hashed while written."""
    known = known or {}
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS_FILE):
        name = path.relative_to(folder).as_posix()
        lines.append(f"{known.get(name) or _hash_file(path).hexdigest()}  {name}\n")
    (folder / CHECKSUMS_FILE).write_text("".join(lines), encoding="utf-8")


def check_folder(folder: Path) -> bool:
    """True when every file listed in CHECKSUMS_FILE is present and unchanged; False when there is no list."""
    listing = folder / CHECKSUMS_FILE
    if not listing.is_file():
        return False
    for number, line in enumerate(listing.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        digest, _, name = line.partition("  ")
        path = folder / name
        if len(digest) != 64 or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ArtifactError(f"line {number} is not '<sha256>  <file>'", listing)
        if not path.is_file():
            raise ArtifactError(f"{name} is missing (listed in {CHECKSUMS_FILE}); the folder is incomplete", folder)
        if _hash_file(path).hexdigest() != digest:
            raise ArtifactError(f"{name} does not match its checksum: it changed since qwdeploy wrote it; "
                                "export it again", folder)
    return True


def gguf_digest_offset(path: Path) -> int | None:
    """Byte offset of the 64 digest characters in a GGUF file, or None when qwdeploy did not write it."""
    with open(path, "rb") as f:
        header = f.read(HEADER_SEARCH_BYTES)
    at = header.find(GGUF_KEY_BYTES)
    return None if at < 0 else at + len(GGUF_KEY_BYTES)


class HashingWriter:
    """A write-only file that hashes what passes through (GGUF data written after a header on disk)."""

    def __init__(self, f: BinaryIO, path: Path):
        f.flush()
        self._f = f
        self.offset = gguf_digest_offset(path)
        if self.offset is None:
            raise ValueError(f"{path}: no {GGUF_KEY} key in the header written so far")
        self.hasher = BackgroundHash(_hash_file(path))  # the header, placeholder included: a few MB

    def write(self, data) -> int:
        self.hasher.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()

    def seal(self) -> None:
        """Put the digest of everything written into the placeholder."""
        self._f.flush()
        end = self._f.tell()
        self._f.seek(self.offset)
        self._f.write(self.hasher.hexdigest().encode())
        self._f.seek(end)


def seal_gguf(path: Path) -> None:
    """Digest a GGUF written by another tool from our intermediate (llama.cpp's quantizer copies our key)."""
    offset = gguf_digest_offset(path)
    if offset is None:
        raise ValueError(f"{path}: no {GGUF_KEY} key")
    digest = _hash_file(path, skip=(offset, 64)).hexdigest()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(digest.encode())


def check_gguf(path: Path) -> bool:
    """True when the embedded digest matches; False when the file carries none."""
    offset = gguf_digest_offset(path)
    if offset is None:
        return False
    with open(path, "rb") as f:
        f.seek(offset)
        stored = f.read(64)
    if _hash_file(path, skip=(offset, 64)).hexdigest().encode() != stored:
        raise ArtifactError("does not match the sha256 qwdeploy stored in it: the file changed since it was "
                            "written (copy error, disk fault, edit); export it again", path)
    return True
