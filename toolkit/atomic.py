"""Artifacts appear whole or not at all, and never at the cost of something the user owns.

Every output is written beside its target under a hidden name that carries our process id, and
renamed into place only when complete. Before anything is written the target is checked: it may
not be (or contain, or sit inside) an input, the current directory, a link, a device or a kernel
filesystem, whatever --force says. Hidden leftovers of runs that were killed (their process id is
gone) are removed by the next run that writes the same output. Cache entries (kernel builds, fetched
headers, test fixtures) appear the same way, made by one process at a time (build_once).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import OutputError

KERNEL_FILESYSTEMS = (Path("/proc"), Path("/sys"))
NAME_MAX = 255
TEMP_KINDS = ("partial", "old", "portable")  # hidden siblings: in-progress output, replaced output, scratch
TEMP_NAME_CHARS = 80  # of the output's name kept in a temporary sibling's name, so long names still fit


def _absolute(out: Path) -> Path:
    """The output's absolute path with its parent's links resolved, but not a link at `out` itself."""
    out = Path(os.path.abspath(out))
    return out.parent.resolve() / out.name if out.name else out


def _kind_of(mode: int) -> str | None:
    kinds = {stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a FIFO",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), None)


def _check_overlap(out: Path, inputs: Iterable[Path]) -> None:
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise OutputError("is the current directory or contains it; refusing to replace it", out)
    for source in inputs:
        source = Path(source).resolve()
        if out == source or out in source.parents:
            raise OutputError(f"would replace the input {source}; choose another output path", out)
        if source in out.parents:
            raise OutputError(f"is inside the input {source}; choose a path outside it", out)


def check_output(out: Path, inputs: Iterable[Path] = ()) -> Path:
    """Refuse outputs that would destroy an input or something that is not ours; return the absolute path."""
    out = _absolute(out)
    if not out.name:
        raise OutputError("is a filesystem root; choose a file or folder path", out)
    if len(os.fsencode(out.name)) > NAME_MAX:
        raise OutputError(f"name is {len(os.fsencode(out.name))} bytes long; filesystems allow {NAME_MAX}", out)
    for kernel in KERNEL_FILESYSTEMS:
        if out == kernel or kernel in out.parents:
            raise OutputError(f"is under {kernel}, a kernel filesystem; choose a path on a disk", out)
    if out.is_symlink():
        target = os.readlink(out)
        dangling = "" if out.exists() else ", dangling"
        raise OutputError(f"is a symbolic link (to {target}{dangling}); refusing to replace it or write through it",
                          out)
    if out.exists():
        kind = _kind_of(out.stat().st_mode)
        if kind:
            raise OutputError(f"is {kind}; refusing to replace it", out)
    _check_overlap(out, inputs)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _temp_prefix(out: Path, kind: str) -> str:
    return f".{out.name[:TEMP_NAME_CHARS]}.{kind}-{os.getpid()}-"


def remove_stale(out: Path) -> list[Path]:
    """Delete hidden siblings of `out` left by runs whose process is gone; return what was removed."""
    removed, stem = [], f".{out.name[:TEMP_NAME_CHARS]}."
    for kind in TEMP_KINDS:
        for path in out.parent.glob(f"{glob.escape(stem)}{kind}-*-*"):
            pid = path.name[len(f"{stem}{kind}-"):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path)
    if removed:
        print(f"removed {len(removed)} leftover(s) of an interrupted earlier run: {removed[0]}", file=sys.stderr)
    return removed


def _prepare(out: Path, inputs: Iterable[Path]) -> Path:
    out = check_output(out, inputs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = "part of the path is a file" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror
        raise OutputError(f"cannot create parent directory ({problem})", out) from None
    try:
        remove_stale(out)
    except OSError as exc:
        raise _os_error(exc, out) from None
    return out


OS_ERRORS = {
    errno.ENOSPC: "no space left (disk or inodes full) while writing",
    errno.EDQUOT: "disk quota exceeded while writing",
    errno.EACCES: "its folder is not writable (permission denied)",
    errno.EPERM: "its folder is not writable (operation not permitted)",
    errno.EROFS: "its folder is on a read-only filesystem",
    errno.ENAMETOOLONG: "the path is too long for this filesystem",
}


def _os_error(exc: OSError, out: Path) -> OutputError:
    problem = OS_ERRORS.get(exc.errno, f"write failed ({exc.strerror or exc})")
    return OutputError(f"{problem}; nothing was left behind", out)


def _default_mode(path: Path, mode: int) -> None:
    # mkdtemp/mkstemp create owner-only paths; an artifact should get the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _replace(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "old"), dir=out.parent))
    try:
        os.replace(out, trash / "old")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def scratch_directory(out: Path) -> Iterator[Path]:
    """A hidden working folder beside `out`, removed afterwards (and by later runs, if we are killed)."""
    out = _absolute(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "portable"), dir=out.parent))
    except OSError as exc:
        raise _os_error(exc, out) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_directory(out: Path, force: bool = False, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a temporary directory that becomes `out` only if the block completes."""
    out = _prepare(out, inputs)
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is a file; expected a directory", out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError("exists and is not empty (pass --force to replace it)", out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "partial"), dir=out.parent))
    except OSError as exc:
        raise _os_error(exc, out) from None
    try:
        _default_mode(tmp, 0o777)
        yield tmp
        _replace(tmp, out)
    except OSError as exc:
        raise _os_error(exc, out) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(out: Path, force: bool = True, inputs: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a temporary file path that becomes `out` only if the block completes."""
    out = _prepare(out, inputs)
    if out.is_dir():
        raise OutputError("is a directory; expected a file path", out)
    if out.exists() and not force:
        raise OutputError("exists (pass --force to replace it)", out)
    try:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(out, "partial"), dir=out.parent)
    except OSError as exc:
        raise _os_error(exc, out) from None
    os.close(fd)
    tmp = Path(name)
    try:
        _default_mode(tmp, 0o666)
        yield tmp
        os.replace(tmp, out)
    except OSError as exc:
        raise _os_error(exc, out) from None
    finally:
        tmp.unlink(missing_ok=True)


def build_once(directory: Path, complete: Callable[[], bool], force: bool, make: Callable[[Path], None]) -> None:
    """`make(staging)` into a temporary folder beside `directory`, renamed into place when it returns. A lock
    lets one process build a given key at a time (parallel test workers, two exports); a process that waited
    finds it `complete()` and builds nothing."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete() and not force:
            return
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".building-"))
        try:
            make(staging)
            if directory.exists():
                shutil.rmtree(directory)
            staging.rename(directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
