"""How fast the aarch64 build of QuantLinear's decode loop could stream int4 weights: an estimate, not a claim.

No Arm board is attached to this machine, so decode speed on one cannot be measured here. What can be
counted is the loop the compiler emits: this script cross-compiles kernels/cpu/quant_linear.cc for each
aarch64 variant of the portable build (dotprod, baseline NEON) with the library's flags (-O3), finds the
steady-state loop of the 4-row decode tile (the shortest loop in dot_rows<4> with float16 scales, the
CPU default, that holds the dot-product
instruction), counts its instructions per weight byte, and asks llvm-mca for its cycles per iteration on
a core's scheduling model. Bytes per cycle times the clock is what one core can consume; the decode bound
is the lesser of that times the cores and the memory bandwidth, divided by the bytes read per token.

    python bench/kernels/aarch64_estimate.py [--mcpu cortex-a76] [--ghz 2.4] [--cores 4] \\
        [--bandwidth-gbs 17] [--weights-mb 303]

Defaults describe a Raspberry Pi 5 (profiles/rpi5.toml: 4x Cortex-A76 at 2.4 GHz, LPDDR4X-4267 on a
32-bit bus, 17 GB/s peak, which measured streams reach only part of) and the 0.5B Qwen2.5 shape at int4
(303 MB read per token). Needs aarch64-linux-gnu-g++ and llvm-mca (scripts/install-system-deps.sh).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qwdeploy.kernels.targets import PORTABLE_VARIANTS

ROOT = Path(__file__).resolve().parents[2]

SOURCE = ROOT / "kernels" / "cpu" / "quant_linear.cc"
# The mangled name of the 4-row decode tile with float16 scales, dot_rows<4, uint16_t>: what a default CPU export
# runs (backends/cpu/half_scales.py).
DECODE_TILE = "dot_rowsILi4EtEE"
# int8 products per instruction: sdot does 16 (4 lanes x 4), a widening smull/smull2 8.
PRODUCTS = {"sdot": 16, "smull": 8, "smull2": 8}
BRANCH = re.compile(r"^(b(\.\w+)?|cbn?z|tbn?z)\s+.*?(\.L\w+)$")


@dataclass(frozen=True)
class Loop:
    function: str
    body: list[str]  # instructions from the loop's label to its backward branch

    @property
    def products(self) -> int:
        return sum(PRODUCTS.get(line.split()[0], 0) for line in self.body)


def loops(assembly: str) -> list[Loop]:
    """Every backward branch's span, per function, in GNU assembler text."""
    function, labels, code = "", {}, []
    for line in (raw.strip() for raw in assembly.splitlines()):
        if re.fullmatch(r"\.L\w+:", line):
            labels[line[:-1]] = len(code)
        elif re.fullmatch(r"[A-Za-z_][\w.$]*:", line):
            function = line[:-1]
        elif line and not line.startswith((".", "//")) and function:
            code.append((function, line))
    found = []
    for end, (function, line) in enumerate(code):
        match = BRANCH.match(line)
        if match and labels.get(match.group(3), end + 1) <= end:
            found.append(Loop(function, [text for _, text in code[labels[match.group(3)]:end + 1]]))
    return found


def steady_loop(flags: tuple[str, ...], compiler: str) -> Loop:
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "quant_linear.s"
        subprocess.run([compiler, "-O3", "-DNDEBUG", "-std=c++17", *flags, "-S", "-o", str(out), str(SOURCE)],
                       check=True)
        candidates = [loop for loop in loops(out.read_text()) if DECODE_TILE in loop.function and loop.products]
    if not candidates:
        raise SystemExit(f"no dot-product loop in {DECODE_TILE} for {' '.join(flags)}")
    return min(candidates, key=lambda loop: len(loop.body))


def mca_cycles(loop: Loop, mcpu: str) -> float:
    """Cycles per iteration in llvm-mca's model of `mcpu` (the loop's branch left out: nothing to schedule)."""
    body = "\n".join(line for line in loop.body if not BRANCH.match(line)) + "\n"
    iterations = 400
    result = subprocess.run([_tool("llvm-mca-19", "llvm-mca"), "-mtriple=aarch64", f"-mcpu={mcpu}",
                             f"-iterations={iterations}"], input=body, capture_output=True, text=True, check=True)
    return int(re.search(r"Total Cycles:\s+(\d+)", result.stdout).group(1)) / iterations


def _tool(*names: str) -> str:
    for name in names:
        if shutil.which(name):
            return name
    raise SystemExit(f"none of {', '.join(names)} on PATH: bash scripts/install-system-deps.sh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mcpu", default="cortex-a76", help="llvm-mca scheduling model")
    parser.add_argument("--ghz", type=float, default=2.4)
    parser.add_argument("--cores", type=int, default=4)
    parser.add_argument("--bandwidth-gbs", type=float, default=17.0, help="the board's memory bandwidth")
    parser.add_argument("--weights-mb", type=float, default=303.0, help="weight bytes read per decode token")
    args = parser.parse_args()
    compiler = _tool("aarch64-linux-gnu-g++")
    print(f"QuantLinear int4 decode loop, {args.mcpu} at {args.ghz} GHz x {args.cores} cores, "
          f"{args.bandwidth_gbs} GB/s, {args.weights_mb} MB per token (estimates from llvm-mca, not measurements)\n")
    print("| build | instructions / iteration | weight bytes / iteration | instructions / weight byte "
          "| cycles / iteration | GB/s per core | decode bound tok/s | bound by |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, flags in PORTABLE_VARIANTS["aarch64"]:
        loop = steady_loop(flags, compiler)
        weight_bytes = loop.products // 2  # int4: two weights per byte, one product per weight
        cycles = mca_cycles(loop, args.mcpu)
        per_core = weight_bytes / cycles * args.ghz  # GB/s
        compute = per_core * args.cores
        tokens = min(compute, args.bandwidth_gbs) * 1e3 / args.weights_mb
        print(f"| {name} | {len(loop.body)} | {weight_bytes} | {len(loop.body) / weight_bytes:.2f} | {cycles:.1f} "
              f"| {per_core:.2f} | {tokens:.0f} | {'compute' if compute < args.bandwidth_gbs else 'memory'} |")


if __name__ == "__main__":
    main()
