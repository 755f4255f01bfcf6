"""Reading a user's files: only regular files (a FIFO would block, a device could act), bounded in
size, JSON parsed into one-line errors; and helpers to quote untrusted values in those lines."""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ArtifactError, CheckpointError, QwdeployError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Index, generation, tokenizer and model configs are kilobytes to a few megabytes; refuse more unread.
MAX_JSON_BYTES = 64 * 1024 * 1024


def open_regular(path: Path, error: type[QwdeployError] = CheckpointError) -> BinaryIO:
    """Open a file for reading, refusing anything but a regular file: opening a FIFO blocks forever
    and opening a device can act on it. Every reader of a user's file goes through here."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise error("not a regular file (a FIFO, device or folder cannot be read as one)", path)
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise error("not a regular file (a FIFO, device or folder cannot be read as one)", path)
        return os.fdopen(fd, "rb")
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or exc})", path) from None


def read_regular(path: Path, limit: int, error: type[QwdeployError] = CheckpointError) -> bytes:
    """All bytes of a regular file, refused (not read) when larger than `limit`."""
    try:
        with open_regular(path, error) as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(size + 1) if size <= limit else b""  # read(n) allocates n up front: not limit
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or exc})", path) from None
    if size > limit or len(data) > limit:
        raise error(f"is {max(size, len(data))} bytes, more than the {limit} such a file may have", path)
    return data


def parse_json_object(raw: bytes, path: Path, what: str | None = None,
                      error: type[QwdeployError] = CheckpointError) -> dict:
    """`raw` as a JSON object, or one line saying why not (deep nesting and huge integers included)."""
    prefix = f"corrupt {what}: " if what else ""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{prefix}not valid JSON (not UTF-8 text)", path) from None
    except RecursionError:
        raise error(f"{prefix}not valid JSON (nested too deeply)", path) from None
    except ValueError as exc:  # JSONDecodeError, and integers beyond Python's digit limit
        raise error(f"{prefix}not valid JSON ({exc})", path) from None
    if not isinstance(value, dict):
        raise error(f"{prefix}must hold a JSON object", path)
    return value


def read_json_object(path: Path, what: str | None = None, error: type[QwdeployError] = CheckpointError) -> dict:
    """A JSON object from a regular file of at most MAX_JSON_BYTES, or one line saying why not."""
    return parse_json_object(read_regular(path, MAX_JSON_BYTES, error), path, what, error)


def read_toml(path: Path, limit: int, error: type[QwdeployError]) -> dict:
    """A TOML file of at most `limit` bytes as a table; every way it can be unreadable is one `error` line."""
    try:
        return tomllib.loads(read_regular(path, limit, error).decode("utf-8"))
    except UnicodeDecodeError:
        raise error("not valid TOML (not UTF-8 text)", path) from None
    except RecursionError:
        raise error("not valid TOML (nested too deeply)", path) from None
    except ValueError as exc:  # TOMLDecodeError, and integers beyond Python's digit limit
        raise error(f"not valid TOML ({exc})", path) from None


def brief(value: object, limit: int = 80) -> str:
    """repr() for an error message: an untrusted value may be megabytes long or nested deep."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int(value: object) -> bool:
    """An integer as JSON means it: Python's bools are ints, JSON's true/false are not."""
    return isinstance(value, int) and not isinstance(value, bool)


def exact_keys(schema: type, data: Any, path: Path) -> dict:
    """`data` when it is an object with exactly the dataclass `schema`'s fields; ArtifactError naming the first
    unknown or missing key otherwise (a file written by another qwdeploy version says so, not half-read)."""
    if not isinstance(data, dict):
        raise ArtifactError(f"{schema.__name__} must be an object, got {type(data).__name__}", path)
    expected = {f.name for f in fields(schema)}
    unknown, missing = sorted(set(data) - expected), sorted(expected - set(data))
    if unknown or missing:
        what = f"unknown key '{unknown[0]}'" if unknown else f"missing key '{missing[0]}'"
        raise ArtifactError(f"{what} in {schema.__name__}; written by another qwdeploy version?", path)
    return data
