"""Runs `qwdeploy` in a child process the way a test needs it.

  cli_child.py slow CKPT OUT   a real GGUF export that pauses once its partial file exists (prints
                               'writing'), so a test can signal or kill it mid-write
  cli_child.py unprivileged ARGS...   qwdeploy ARGS with permission checks enforced even for root
                               (CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped)
  cli_child.py plain ARGS...   qwdeploy ARGS
"""

import ctypes
import sys
import time

from qwdeploy.exporters.gguf import exporter
from qwdeploy.toolkit.cli.main import main

CAPABILITY_VERSION_3 = 0x20080522
DAC_CAPABILITIES = (1, 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_dac_capabilities() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(CAPABILITY_VERSION_3, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for bit in DAC_CAPABILITIES:
        data[0].effective &= ~(1 << bit)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def slow_export(checkpoint: str, out: str) -> None:
    real_write = exporter.write_gguf

    def paused_write(path, arch, metadata, tensors, chunks, progress=lambda n: None):
        def slow_chunks(tensor):
            if tensor is tensors[1]:
                print("writing", flush=True)
                time.sleep(60)
            yield from chunks(tensor)

        real_write(path, arch, metadata, tensors, slow_chunks, progress)

    exporter.write_gguf = paused_write
    sys.argv = ["qwdeploy", "export", checkpoint, "--format", "gguf", "--quant", "q8_0", "-o", out, "--no-verify"]
    main()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "slow":
        slow_export(*args)
    else:
        if mode == "unprivileged":
            drop_dac_capabilities()
        sys.argv = ["qwdeploy", *args]
        main()
