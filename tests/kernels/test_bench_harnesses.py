"""bench/kernels' C++ harnesses build against today's kernels, and their checks pass (the kernels against plain
double-precision references on odd shapes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# harness → the kernel sources it links (kernels/cpu/NAME.cc)
HARNESSES = {"quant_linear": ("amx", "quant_linear", "int8_act", "weights", "linear", "half"),
             "linear": ("linear", "weights", "half"),
             "attention": ("attention", "attention_bf16", "qk_norm_rotary", "half")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    compiler = shutil.which("g++")
    assert compiler, "no g++: run scripts/install-system-deps.sh"  # as the kernel builds: a set-up failure
    out = tmp_path_factory.mktemp("harnesses")
    binaries = {}
    for name, sources in HARNESSES.items():
        binary = out / name
        command = [compiler, "-O2", "-march=native", "-std=c++17", "-fopenmp",
                   str(ROOT / "bench" / "kernels" / f"{name}.cc"),
                   *(str(ROOT / "kernels" / "cpu" / f"{source}.cc") for source in sources), "-o", str(binary)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{name}: {run.stderr}"
        binaries[name] = binary
    return binaries


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_checks_pass(built: dict[str, Path], name: str):
    run = subprocess.run([str(built[name]), "check"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    lines = [line for line in run.stdout.splitlines() if line.startswith("check")]
    assert run.returncode == 0 and lines and all(line.endswith(" ok") for line in lines), run.stdout + run.stderr

