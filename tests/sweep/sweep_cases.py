"""What the sweep tests share: the plan they write, the CLI run, and the tiny test profile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli

ARCHS = ("qwen2", "qwen3")
QUANTS = ("f16", "q8_0", "q4_0")
TARGETS = ("rpi5", "x86-server", "tiny-board")
POSITIONS = 32
MAX_PPL_RATIO = 1.05
TINY_BOARD = """description = "a board too small for any runtime: every cell is skipped (tests)"
[memory]
total_gib = 0.25
budget_gib = 0.2
[cpu]
arch = "aarch64"
cores = 4
[accelerator]
kind = "none"
[deploy]
format = "gguf"
backend = "cpu"
dtypes = ["f16", "q8_0"]
gguf_quant = "q8_0"
onnx_quant = "int8"
"""


def write_plan(folder: Path, checkpoints: dict[str, Path | str], targets=("rpi5", "x86-server", "tiny-board.toml"),
               quants=QUANTS, metrics=("perplexity", "agreement"), positions: int = POSITIONS, gen: int = 4,
               runs: int = 1, limits: str = f"max_ppl_ratio = {MAX_PPL_RATIO}", tables: str = "") -> Path:
    """plan.toml in `folder` (with tiny-board.toml beside it); checkpoint paths as given (relative: to `folder`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny-board.toml").write_text(TINY_BOARD)
    names = "\n".join(f'{name} = "{path}"' for name, path in checkpoints.items())
    plan = folder / "plan.toml"
    plan.write_text(f"""targets = {json.dumps(list(targets))}

[checkpoints]
{names}

[export]
gguf = {json.dumps(list(quants))}

[eval]
metrics = {json.dumps(list(metrics))}
positions = {positions}

[profile]
prompt_len = 8
gen = {gen}
runs = {runs}

[choose]
by = "decode_tokens_per_s"
{limits}
{tables}""")
    return plan


@dataclass(frozen=True)
class Swept:
    plan: Path
    out: Path
    output: str  # what the CLI printed
    doc: dict  # sweep.json

    def cell(self, cell_id: str) -> dict:
        return next(c for c in self.doc["cells"] if c["id"] == cell_id)


def run_sweep(plan: Path, out: Path, *extra: str) -> Swept:
    result = CliRunner().invoke(cli, ["sweep", str(plan), "--out", str(out), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return Swept(plan, out, result.output, json.loads((out / "sweep.json").read_text()))
