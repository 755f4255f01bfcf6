"""checkpoints × (format, type) × targets → the cells to run, and the ones a target cannot run, with why.

Each check returns why a target cannot run a candidate, or None; they run in order and the first reason
wins. Sizing uses selection.size: the memory plan `export --profile` and `package` hold to the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..bundle.plan import describe
from ..devices import DEVICES
from ..errors import QwdeployError
from ..profiles import DeviceProfile
from ..selection import Candidate, size
from ..spec import ModelSpec, load_config, spec_from_config
from .plan import Plan
from .results import FAILED, SKIPPED, CellResult
from .state import artifact_key, fingerprint

SUFFIX = {"gguf": ".gguf", "onnx": ""}  # an ONNX artifact is a folder


@dataclass(frozen=True)
class ArtifactSpec:
    name: str  # its file or folder name in the artifacts folder
    checkpoint: str
    checkpoint_dir: Path
    format: str
    quant: str
    profile: DeviceProfile | None  # what the exporter builds for (ONNX); None when no profile changes it (GGUF)
    key: str  # state.artifact_key


@dataclass(frozen=True)
class CellSpec:
    id: str
    artifact: ArtifactSpec
    profile: DeviceProfile  # the target

    @property
    def device(self) -> str:
        return self.profile.deploy.backend


@dataclass(frozen=True)
class Matrix:
    cells: tuple[CellSpec, ...]
    specs: dict[str, ModelSpec]  # per checkpoint name, where its config reads
    closed: tuple[CellResult, ...]  # skipped cells, and the cells of checkpoints whose config does not read
    order: tuple[str, ...]  # every cell id, in plan order


def cell_id(checkpoint: str, candidate: Candidate, target: str) -> str:
    return f"{checkpoint}/{candidate.format}-{candidate.quant}/{target}"


def _not_listed(spec: ModelSpec, c: Candidate, p: DeviceProfile) -> str | None:
    if c.quant not in p.deploy.dtypes:
        return f"{c.quant} is not among {p.name}'s types ({', '.join(p.deploy.dtypes)})"
    return None


def _not_exportable(spec: ModelSpec, c: Candidate, p: DeviceProfile) -> str | None:
    from ...exporters import EXPORTERS

    reason = EXPORTERS.get(c.format).unsupported_reason(spec)
    return f"cannot export to {c.format}: {reason}" if reason else None


def _off_the_npu(spec: ModelSpec, c: Candidate, p: DeviceProfile) -> str | None:
    """A GGUF type whose matmuls llama.cpp's CANN backend leaves to the CPU on an NPU that runs other types."""
    if c.format != "gguf" or p.accelerator.kind != "ascend":
        return None
    from ...backends.cann.gguf_support import NPU_MATMUL_TYPES, matmul_placement, soc_family
    from ...backends.cann.support import Placement
    from ...exporters.gguf.quant import quant_type

    family = soc_family(p)
    placement, reason = matmul_placement(family, quant_type(c.quant).tensor_type)
    return reason if family in NPU_MATMUL_TYPES and placement is not Placement.NPU else None


def _no_runtime(spec: ModelSpec, c: Candidate, p: DeviceProfile) -> str | None:
    runtimes = DEVICES[p.deploy.backend].runtimes
    if c.format not in runtimes:
        return f"qwdeploy cannot profile {c.format} on {p.deploy.backend} (it profiles {', '.join(runtimes)} there)"
    return None


def _does_not_fit(spec: ModelSpec, c: Candidate, p: DeviceProfile) -> str | None:
    sized = size(spec, c, p)
    if sized.plan is None:
        return sized.refused
    return None if sized.fits else f"does not fit: {describe(sized.plan)}"


CHECKS: tuple[Callable[[ModelSpec, Candidate, DeviceProfile], str | None], ...] = (
    _not_listed, _not_exportable, _off_the_npu, _no_runtime, _does_not_fit)


def skip_reason(spec: ModelSpec, candidate: Candidate, profile: DeviceProfile) -> str | None:
    for check in CHECKS:
        reason = check(spec, candidate, profile)
        if reason:
            return reason
    return None


def _artifact(plan: Plan, name: str, checkpoint_key: str, c: Candidate, p: DeviceProfile) -> ArtifactSpec:
    built_for = p if c.format == "onnx" else None
    label = f"{name}-{c.quant}" + (f"-{p.name}" if built_for else "") + SUFFIX[c.format]
    return ArtifactSpec(label, name, plan.checkpoints[name], c.format, c.quant, built_for,
                        artifact_key(checkpoint_key, c.format, c.quant, built_for))


def _closed(cid: str, name: str, c: Candidate, target: str, status: str, reason: str) -> CellResult:
    return CellResult(cid, name, c.format, c.quant, target, status, reason, None)


def expand(plan: Plan) -> Matrix:
    """Every cell in plan order (checkpoint, format, type, target)."""
    candidates = [Candidate(fmt, q) for fmt, quants in plan.export.items() for q in quants]
    cells, closed, specs = [], [], {}
    order = tuple(cell_id(name, c, p.name) for name in plan.checkpoints for c in candidates for p in plan.targets)
    for name, folder in plan.checkpoints.items():
        try:
            specs[name] = spec_from_config(load_config(folder / "config.json"), folder / "config.json")
            checkpoint_key = fingerprint(folder)
        except (QwdeployError, OSError) as exc:
            closed += [_closed(cell_id(name, c, p.name), name, c, p.name, FAILED, str(exc))
                       for c in candidates for p in plan.targets]
            continue
        for c in candidates:
            for p in plan.targets:
                cid = cell_id(name, c, p.name)
                reason = skip_reason(specs[name], c, p)
                if reason:
                    closed.append(_closed(cid, name, c, p.name, SKIPPED, reason))
                else:
                    cells.append(CellSpec(cid, _artifact(plan, name, checkpoint_key, c, p), p))
    return Matrix(tuple(cells), specs, tuple(closed), order)
