"""One cell's result from its steps' outcomes: the figures, the fit and cost for its target, its status."""

from __future__ import annotations

from ..bundle.plan import plan_for
from ..profiler.sweeps import usd_per_million_tokens
from .matrix import CellSpec
from .results import DONE, FAILED, Built, CellResult, Fit, Quality, Speed
from .steps import Failure


def _fit(built: Built, cell: CellSpec) -> Fit:
    plan = plan_for(built.weight_bytes, built.kv_bytes_per_token, built.context_length, cell.profile)
    return Fit(plan.total, plan.budget, plan.fits)


def cell_result(cell: CellSpec, inputs: str, built: Built | Failure, quality: Quality | Failure | None,
                speed: Speed | Failure | None) -> CellResult:
    """`quality` None: not evaluated (the plan measures speed only, or the export failed)."""
    steps = {"export": built, "eval": quality, "profile": speed}
    failed = next(((step, o.reason) for step, o in steps.items() if isinstance(o, Failure)), None)
    a = cell.artifact
    built = built if isinstance(built, Built) else None
    quality = quality if isinstance(quality, Quality) else None
    speed = speed if isinstance(speed, Speed) else None
    usd = usd_per_million_tokens(cell.profile.deploy.usd_per_hour, speed.decode_tokens_per_s) if speed else None
    return CellResult(
        id=cell.id, checkpoint=a.checkpoint, format=a.format, quant=a.quant, target=cell.profile.name,
        status=FAILED if failed else DONE, reason=f"{failed[0]}: {failed[1]}" if failed else None, inputs=inputs,
        artifact=built, fit=_fit(built, cell) if built else None, quality=quality, speed=speed,
        usd_per_million_tokens=usd)
