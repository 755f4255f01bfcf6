"""Helpers for the untrusted-input tests: a bounded wait for a one-line refusal, FIFOs, and running
Python where file permissions bind even for root."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from qwdeploy.toolkit.errors import QwdeployError


RNG = np.random.default_rng(10)


def refused(call: Callable[[], object], error: type[QwdeployError], path: Path, problem: str,
            seconds: float = 20) -> None:
    """`call()` must raise `error` within `seconds`: one line naming `path` and matching `problem`."""
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - whatever escapes is what the test judges
            outcome["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if path.is_fifo():  # let the blocked reader go before failing
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still running after {seconds} s on {path}")
    exc = outcome.get("exc")
    assert isinstance(exc, error), f"expected {error.__name__}, got {exc!r}"
    message = str(exc)
    assert str(path) in message and "\n" not in message, message
    assert re.search(problem, message), message


def permission_bound() -> list[str]:
    """A command prefix under which file permissions bind even for root (CAP_DAC_* dropped by setpriv,
    util-linux); empty for other users, whom they bind anyway."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


def unprivileged(call: str) -> str:
    """Run Python `call` with permissions binding and return the one QwdeployError line it must end with."""
    prefix = permission_bound()
    code = ("import sys\nfrom pathlib import Path\nfrom qwdeploy.toolkit.errors import QwdeployError\n"
            "from qwdeploy.toolkit.checkpoint import open_checkpoint\n"
            "from qwdeploy.toolkit.safetensors_io import SafetensorsFile\n"
            "from qwdeploy.toolkit.profiles import load_profile\n"
            "from qwdeploy.exporters.gguf.reader import GGUFFile\n"
            f"try:\n    {call}\nexcept QwdeployError as exc:\n    print(exc)\n    sys.exit(3)\n")
    proc = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3 and proc.stdout.count("\n") == 1, proc.stdout + proc.stderr
    return proc.stdout.strip()


def fifo(path: Path) -> Path:
    if os.path.lexists(path):
        path.unlink()
    os.mkfifo(path)
    return path


def st_file(path: Path, header: dict | bytes, data_len: int = 64) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + RNG.integers(1, 256, data_len, dtype=np.uint8).tobytes())
    return path


def entry(dtype: object = "F32", shape: object = (4,), offsets: object = (0, 16)) -> dict:
    return {"t": {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
                  "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}}
