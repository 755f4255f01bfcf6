"""A bundle travels as a folder or as a `.tar.gz` of it; the archive is untrusted input.

`pack` writes the same bytes for the same files (sorted members, fixed owner, time and modes), so a
bundle's digest identifies its content. `unpack` writes only regular files and folders under `dest`,
and only after every member has been judged: anything a hostile archive could use to write elsewhere
(absolute or `..` paths, links, devices), to clobber (duplicates) or to fill the disk (declared sizes,
decompression bombs) is refused by name, and a refused archive leaves `dest` absent.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator

from ..atomic import atomic_directory, atomic_file
from ..errors import ArtifactError

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
DIR_MODE, FILE_MODE = 0o755, 0o644
ONLY = "bundles hold only regular files and folders"

# Types a bundle folder may hold on disk, and tar member types it may hold in an archive.
DISK_KINDS = {stat.S_ISLNK: "a symbolic link", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
              stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
MEMBER_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
                tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                tarfile.FIFOTYPE: "a FIFO", tarfile.CONTTYPE: "a contiguous file",
                tarfile.GNUTYPE_SPARSE: "a sparse file"}
# What gzip, zlib and tarfile raise for a stream that is cut off, corrupt or not a tar.
READ_ERRORS = (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)


def _walk(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under `folder`, parents before children, siblings by name, links not followed."""
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        info = path.lstat()
        yield path, info
        if stat.S_ISDIR(info.st_mode):
            yield from _walk(path)


def _members(folder: Path) -> list[tuple[tarfile.TarInfo, Path]]:
    members = []
    for path, info in _walk(folder):
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            kind = next((name for test, name in DISK_KINDS.items() if test(info.st_mode)), "a special file")
            raise ArtifactError(f"is {kind}; {ONLY}, so it cannot be packed", path)
        member = tarfile.TarInfo(path.relative_to(folder).as_posix())
        member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "", ""
        if stat.S_ISDIR(info.st_mode):
            member.type, member.mode = tarfile.DIRTYPE, DIR_MODE
        else:
            member.size, member.mode = info.st_size, FILE_MODE
        members.append((member, path))
    return members


def pack(folder: Path, out: Path) -> Path:
    """Write `folder` as a deterministic `.tar.gz` at `out` (not inside `folder`); return `out`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError("is not a folder; only a bundle folder can be packed", folder)
    members = _members(folder)  # refuse links and special files before anything is written
    with atomic_file(out, inputs=[folder]) as tmp, open(tmp, "wb") as raw:
        # gzip's header would otherwise carry the time and the temporary file's name.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed, \
                tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, path in members:
                if member.isdir():
                    tar.addfile(member)
                else:
                    with open(path, "rb") as source:
                        tar.addfile(member, source)
    return Path(out)


class _OverBudget(Exception):
    """The decompressed stream ran past its limit."""


class _Budget:
    """A decompressed stream that refuses to yield more than `limit` bytes in all, whatever the headers say."""

    def __init__(self, stream: BinaryIO, limit: int):
        self._stream, self._left = stream, limit

    def read(self, size: int) -> bytes:
        # Read-ahead is clipped to the limit; at the limit, one byte more proves the overrun.
        data = self._stream.read(min(size, CHUNK, self._left) or 1)
        if len(data) > self._left:
            raise _OverBudget
        self._left -= len(data)
        return data


def _judge(archive: Path, member: tarfile.TarInfo, seen: set[PurePosixPath]) -> PurePosixPath:
    """The member's path inside the bundle, or a refusal naming it."""
    name = member.name
    if name.startswith("/"):
        raise ArtifactError(f"member {name!r} has an absolute path; members must be relative to the bundle",
                            archive)
    path = PurePosixPath(name)  # folds "./" and "//", so spelling variants of one path count as duplicates
    if ".." in path.parts:
        raise ArtifactError(f"member {name!r} climbs out of the bundle with '..'", archive)
    if member.type not in FILE_TYPES and not member.isdir():
        kind = MEMBER_KINDS.get(member.type, f"a special member (type {member.type!r})")
        target = f" (to {member.linkname!r})" if member.linkname else ""
        raise ArtifactError(f"member {name!r} is {kind}{target}; {ONLY}", archive)
    if path in seen:
        raise ArtifactError(f"member {name!r} appears twice; refusing to let one overwrite the other", archive)
    seen.add(path)
    return path


def _write(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    # Only the content is taken: modes, owners and times from an archive could make files setuid or hidden.
    try:
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        out = open(target, "xb")
    except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
        raise ArtifactError(f"member {member.name!r} clashes with the bundle folder or an earlier member "
                            f"({exc.strerror})", archive) from None
    with out:
        shutil.copyfileobj(tar.extractfile(member), out, CHUNK)


def _extract(archive: Path, raw: BinaryIO, into: Path, max_bytes: int) -> None:
    stream = _Budget(gzip.GzipFile(fileobj=raw, mode="rb"), max_bytes)
    seen: set[PurePosixPath] = set()
    declared, where = 0, "the first member's header"
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                path = _judge(archive, member, seen)
                declared += member.size
                if declared > max_bytes:
                    raise ArtifactError(f"member {member.name!r} brings the declared size to {declared} bytes, "
                                        f"over the limit of {max_bytes}", archive)
                where = f"member {member.name!r}"
                _write(archive, tar, member, into / path)
                where = f"the data after member {member.name!r}"
        # Reading to gzip's end checks its length and CRC: a cut-off tail and trailing bombs are caught too.
        while stream.read(CHUNK):
            pass
    except _OverBudget:
        raise ArtifactError(f"decompresses to more than {max_bytes} bytes (in {where}); "
                            "refusing a possible decompression bomb", archive) from None
    except READ_ERRORS as exc:
        raise ArtifactError(f"is truncated or not a valid .tar.gz (in {where}: {exc})", archive) from None


def unpack(archive: Path, dest: Path, max_bytes: int) -> Path:
    """Extract a bundle archive to `dest`, all or nothing; `max_bytes` bounds its decompressed size
    (contents and tar headers) and its members' declared sizes. Return `dest`."""
    archive = Path(archive)
    if not archive.is_file():  # a FIFO would block the open below
        problem = "is not a regular file" if archive.exists() else "does not exist"
        raise ArtifactError(f"{problem}; expected a bundle .tar.gz", archive)
    try:
        raw = open(archive, "rb")
    except OSError as exc:
        raise ArtifactError(f"cannot be read ({exc.strerror})", archive) from None
    with raw:
        if raw.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
            raise ArtifactError("is not gzip-compressed; expected a bundle .tar.gz", archive)
        raw.seek(0)
        # Extraction happens in a hidden sibling that becomes `dest` only once every member was accepted.
        with atomic_directory(dest, inputs=[archive]) as tmp:
            _extract(archive, raw, tmp, max_bytes)
    return Path(dest)


def open_bundle(path: Path, scratch: Path, max_bytes: int) -> Path:
    """A bundle folder as it is, or an archive unpacked into `scratch` under its own name."""
    path = Path(path)
    if path.is_dir():
        return path
    name = next((path.name[:-len(s)] for s in ARCHIVE_SUFFIXES if path.name.endswith(s) and path.name != s),
                path.name)
    return unpack(path, Path(scratch) / name, max_bytes)
