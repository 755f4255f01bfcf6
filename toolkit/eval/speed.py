"""Tokens/s beside the quality figures: read from `qwdeploy profile` documents (profile.json)."""

from __future__ import annotations

from pathlib import Path

from ..errors import QwdeployError
from ..files import read_json_object
from ..profiler.schema import validate
from .results import Speed
from .targets import Target


def _matches(profiled: Path, target: Target, targets: list[Target]) -> bool:
    # A profile records the path as typed: the same file, else the only artifact of that name.
    if profiled.resolve() == target.path.resolve():
        return True
    return profiled.name == target.path.name and sum(t.path.name == profiled.name for t in targets) == 1


def read_speeds(paths: tuple[Path, ...], targets: list[Target]) -> dict[Path, Speed]:
    """Target path → its speed, for each profile document given; a document of no evaluated artifact is refused."""
    speeds: dict[Path, Speed] = {}
    for path in paths:
        doc = read_json_object(path, "profile document", QwdeployError)
        try:
            validate(doc)
        except QwdeployError as exc:
            raise QwdeployError(f"not a `qwdeploy profile` document: {exc}", path) from None
        profiled = Path(doc["artifact"]["path"])
        target = next((t for t in targets if _matches(profiled, t, targets)), None)
        if target is None:
            raise QwdeployError(f"profiles {profiled}, which is not among the artifacts evaluated", path)
        summary = doc["summary"]
        speeds[target.path] = Speed(summary["decode_tokens_per_s"]["median"],
                                    summary["prefill_tokens_per_s"]["median"], str(path))
    return speeds
