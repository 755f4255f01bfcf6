"""Artifacts appear whole or not at all: write beside the target, rename when complete."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def _check_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create parent directory ({exc.strerror})", out) from None
    if not os.access(out.parent, os.W_OK):
        raise OutputError("parent directory is not writable", out)


def _os_error(exc: OSError, out: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError("disk full while writing; nothing was left behind", out)
    return OutputError(f"write failed ({exc.strerror or exc}); nothing was left behind", out)


def _default_mode(path: Path, mode: int) -> None:
    # mkdtemp/mkstemp create owner-only paths; an artifact should get the usual umask permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / "old")
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextmanager
def atomic_directory(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes `out` only if the block completes."""
    out = Path(out)
    if out.is_file():
        raise OutputError("exists and is a file; expected a directory", out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError("exists and is not empty (pass --force to replace it)", out)
    _check_parent(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    _default_mode(tmp, 0o777)
    try:
        yield tmp
        _replace(tmp, out)
    except OSError as exc:
        raise _os_error(exc, out) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_file(out: Path, force: bool = True) -> Iterator[Path]:
    """Yield a temporary file path that becomes `out` only if the block completes."""
    out = Path(out)
    if out.is_dir():
        raise OutputError("is a directory; expected a file path", out)
    if out.exists() and not force:
        raise OutputError("exists (pass --force to replace it)", out)
    _check_parent(out)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.partial-", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    _default_mode(tmp, 0o666)
    try:
        yield tmp
        os.replace(tmp, out)
    except OSError as exc:
        raise _os_error(exc, out) from None
    finally:
        if tmp.exists():
            tmp.unlink()
