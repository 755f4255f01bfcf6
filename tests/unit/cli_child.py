"""Runs `qwdeploy` in a child process the way a test needs it.

  cli_child.py slow CKPT OUT   a real GGUF export that pauses once its partial file exists (prints
                               'writing'), so a test can signal or kill it mid-write
  cli_child.py plain ARGS...   qwdeploy ARGS
"""

import signal
import sys
import time

from qwdeploy.exporters.gguf import exporter
from qwdeploy.toolkit.cli.main import main


def slow_export(checkpoint: str, out: str) -> None:
    real_write = exporter.write_gguf

    def paused_write(path, arch, metadata, tensors, chunks, progress=lambda n: None):
        def slow_chunks(tensor):
            if tensor is tensors[1]:
                print("writing", flush=True)
                # Short sleeps: the kernel may hand a process-wide signal to another thread (the hashing
                # or progress thread), which does not cut the main thread's sleep short; Python runs the
                # handler at the main thread's next wake-up.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    time.sleep(0.05)
            yield from chunks(tensor)

        real_write(path, arch, metadata, tensors, slow_chunks, progress)

    exporter.write_gguf = paused_write
    sys.argv = ["qwdeploy", "export", checkpoint, "--format", "gguf", "--quant", "q8_0", "-o", out, "--no-verify"]
    main()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "slow":
        # As in a terminal's foreground, where Ctrl-C reaches it: a test run started in the background
        # (`pytest &` from a script) starts every child with SIGINT ignored, and Python keeps it so.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        slow_export(*args)
    else:
        sys.argv = ["qwdeploy", *args]
        main()
