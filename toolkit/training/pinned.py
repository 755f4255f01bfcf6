"""Training in a child process whose float kernels are pinned to AVX2 on x86 (torch's own, MKL's and
oneDNN's), so that x86 CPUs of both vendors take the same float path. Unpinned, an AMD Zen4 and an Intel
Xeon with AMX trained different models from one seed, and only the Zen4's learned to retrieve.
The pins act only before those libraries first compute, hence a fresh process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import QwdeployError
from .data import qwen_encode, used_ids
from .train import Progress, train

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
X86 = ("x86_64", "AMD64")
CHILD = f"import sys; from {__name__} import child_main; child_main(*sys.argv[1:])"


def child_env() -> dict[str, str]:
    """The training child's environment: this one, with PINS on x86 (other architectures have one float path)."""
    return {**os.environ, **(PINS if platform.machine() in X86 else {})}


def train_pinned(arch: str, seed: int, steps: int, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """train() for the used ids of the demo text, in a child process with child_env()."""
    env = child_env()
    with tempfile.TemporaryDirectory(prefix="qwdeploy-train-") as tmp:
        state, log = Path(tmp) / "state.npz", Path(tmp) / "stderr.txt"
        with open(log, "w") as stderr:
            child = subprocess.Popen([sys.executable, "-c", CHILD, arch, str(seed), str(steps), str(state)],
                                     env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
            try:
                for line in child.stdout:  # "step loss" after each step
                    step, loss = line.split()
                    if progress is not None:
                        progress(int(step), float(loss))
                code = child.wait()
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        if code != 0:
            lines = log.read_text(errors="replace").strip().splitlines() or ["no message"]
            raise QwdeployError(f"training {arch} failed in its child process (exit {code}): {lines[-1]}")
        with np.load(state) as saved:
            return {name: saved[name] for name in saved.files}


def child_main(arch: str, seed: str, steps: str, out: str) -> None:
    """The child's side: train, print "step loss" per step, save the state to `out` (.npz)."""
    encode = qwen_encode()
    state = train(arch, encode, used_ids(encode), int(seed), int(steps),
                  lambda step, loss: print(step, loss, flush=True))
    np.savez(out, **state)
