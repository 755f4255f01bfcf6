"""bench/kernels/aarch64_estimate.py finds the steady-state loop of QuantLinear's aarch64 decode tile.

The loop's dot products are fixed by the kernel's design (4 rows of 32 int4 columns per step: 128 weights),
so a parser that picked the wrong loop, or a compiler that unrolled it differently, shows here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from qwdeploy.kernels.targets import PORTABLE_VARIANTS

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "kernels" / "aarch64_estimate.py"
spec = importlib.util.spec_from_file_location("aarch64_estimate", SCRIPT)
estimate = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(estimate)


@pytest.mark.parametrize("variant, instruction", [("dotprod", "sdot"), ("baseline", "smull")])
def test_the_decode_loop_is_found_and_costed(variant: str, instruction: str):
    flags = dict(PORTABLE_VARIANTS["aarch64"])[variant]
    loop = estimate.steady_loop(flags, estimate._tool("aarch64-linux-gnu-g++"))
    assert loop.products == 4 * 32  # 4 rows x 32 columns of int4 weights per iteration: 64 weight bytes
    assert any(line.split()[0] == instruction for line in loop.body)
    # Between a quarter and 2.5 instructions per weight byte (float16 scales add their widening): a wrong loop
    # (prefill's, or one unrolled twice) falls outside.
    assert 2.5 * 64 > len(loop.body) > 64 // 4
    cycles = estimate.mca_cycles(loop, "cortex-a76")
    assert len(loop.body) / 4 <= cycles < 4 * len(loop.body)  # Cortex-A76 issues at most 4 per cycle
