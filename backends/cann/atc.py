"""The ATC command that compiles a static folder into an offline model (.om) for one Ascend SoC."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import onnx

from ...toolkit.errors import EngineError
from ...toolkit.layout import MODEL_FILE
from ...toolkit.profiles import DeviceProfile
from .options import CannOptions

SCRIPT = "atc.sh"
DYNAMIC = -1  # the sequence axis: one of the gears at run time
SEQUENCE_INPUTS = ("input_ids", "position_ids")


def input_shape(model: onnx.ModelProto) -> str:
    """ATC's --input_shape: every input by name, the sequence axis as -1."""
    parts = []
    for value in model.graph.input:
        dims = [d.dim_value if d.dim_value else DYNAMIC for d in value.type.tensor_type.shape.dim]
        parts.append(f"{value.name}:{','.join(map(str, dims))}")
    return ";".join(parts)


def atc_command(model: onnx.ModelProto, profile: DeviceProfile, options: CannOptions) -> list[str]:
    dynamic = sum(d.dim_value == 0 for v in model.graph.input for d in v.type.tensor_type.shape.dim)
    gears = ";".join(",".join([str(g)] * dynamic) for g in options.gears)
    soc = profile.accelerator.soc_version
    return ["atc", "--framework=5", f"--model={MODEL_FILE}", f"--output=model_{soc}", f"--soc_version={soc}",
            "--input_format=ND", f"--input_shape={input_shape(model)}", f"--dynamic_dims={gears}",
            f"--precision_mode={options.precision_mode}"]


def write_script(folder: Path, command: list[str], profile: DeviceProfile) -> Path:
    script = folder / SCRIPT
    script.write_text(
        "#!/bin/sh\n"
        f"# Written by qwdeploy for {profile.name} ({profile.accelerator.soc_version}, CANN "
        f"{profile.accelerator.cann_version}): compiles {MODEL_FILE} into an offline model beside it.\n"
        "set -e\ncd \"$(dirname \"$0\")\"\n" + " \\\n  ".join(shlex.quote(part) for part in command) + "\n")
    script.chmod(0o755)
    return script


def run_atc(folder: Path, command: list[str]) -> str | None:
    """Runs ATC in `folder` when it is on PATH; returns what happened, None when it is absent."""
    if shutil.which("atc") is None:
        return None
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()
        errors = [line for line in lines if "error" in line.lower()][:3] or lines[-3:]
        raise EngineError(f"atc failed ({result.returncode}): {' / '.join(errors)}", folder)
    return "compiled by atc"
