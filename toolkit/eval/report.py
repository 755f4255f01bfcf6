"""An EvalReport → the versioned JSON document (eval.schema.json), validated before anyone sees it."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources

from .. import __version__
from ..metrics import Agreement
from ..profiler.schema import check_document
from .needle import ANSWER_TOKENS, depth_fractions
from .results import ArtifactResult, CellResult, EvalReport, ReferenceResult, Speed
from .targets import Target

SCHEMA_ID = "qwdeploy.eval"
SCHEMA_VERSION = 1
SCHEMA_FILE = "eval.schema.json"


@lru_cache(maxsize=1)
def eval_schema() -> dict:
    return json.loads(resources.files("qwdeploy.toolkit.eval").joinpath(SCHEMA_FILE).read_text("utf-8"))


def validate(document: dict) -> None:
    check_document(document, eval_schema(), "eval")


def _number(value: float) -> float | None:
    """JSON has no NaN or infinity: a damaged artifact's figure that is not finite is written as null."""
    return value if math.isfinite(value) else None


def _agreement(a: Agreement) -> dict:
    return {"positions": a.positions, "kl_mean": _number(a.kl_mean), "kl_max": _number(a.kl_max),
            "top1": _number(a.top1), "max_abs": _number(a.max_abs)}


def _cells(cells: tuple[CellResult, ...], reference: tuple[CellResult, ...]) -> list[dict]:
    return [{"context": c.cell.context, "depth": c.cell.depth, "passkey": c.cell.passkey,
             "prompt_tokens": len(c.cell.prompt), "key_at": c.cell.key_at, "status": c.status, "answer": c.answer,
             "reason": c.reason, "reference": r.status} for c, r in zip(cells, reference)]


def _speed(speed: Speed | None) -> dict | None:
    return None if speed is None else {"decode_tokens_per_s": speed.decode_tokens_per_s,
                                       "prefill_tokens_per_s": speed.prefill_tokens_per_s, "source": speed.source}


def _target(t: Target) -> dict:
    return {"path": str(t.path), "kind": t.kind, "engine": t.engine, "size_bytes": t.size_bytes,
            "context_length": t.context_length, "integrity": t.integrity}


def _reference(r: ReferenceResult) -> dict:
    return {**_target(r.target), "positions": r.positions, "perplexity": _number(r.perplexity),
            "needle": None if r.needle is None else _cells(r.needle, r.needle), "speed": _speed(r.speed),
            "notes": list(r.notes)}


def _artifact(a: ArtifactResult, reference: ReferenceResult) -> dict:
    needle = None
    if a.needle is not None and reference.needle is not None and a.match is not None:
        needle = {"cells": _cells(a.needle, reference.needle), "reference_passed": a.match.reference_passed,
                  "also_passed": a.match.also_passed, "share": a.match.share}
    ppl = a.perplexity
    return {**_target(a.target), "positions": a.positions, "agreement": _agreement(a.agreement),
            "buckets": [{"start": b.start, "end": b.end, **_agreement(b.agreement)} for b in a.buckets],
            "perplexity": {"value": _number(ppl.value), "reference": _number(ppl.reference),
                           "ratio": _number(ppl.ratio), "tokens": ppl.tokens},
            "needle": needle, "speed": _speed(a.speed), "notes": list(a.notes)}


def build_document(report: EvalReport) -> dict:
    options, needle = report.options, report.options.needle
    gates = options.gates
    document = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "qwdeploy_version": __version__,
        "text": {"source": report.text.source, "tokens": report.text_tokens, "scored": report.reference.positions},
        "settings": {
            "positions": options.positions,
            "needle": None if needle is None else {
                "contexts": list(needle.contexts), "depths": list(depth_fractions(needle.depths)),
                "seed": needle.seed, "answer_tokens": ANSWER_TOKENS},
            "gates": {"max_kl": gates.max_kl, "max_ppl_ratio": gates.max_ppl_ratio, "min_needle": gates.min_needle}},
        "reference": _reference(report.reference),
        "artifacts": [_artifact(a, report.reference) for a in report.artifacts],
        "failures": list(report.failures),
    }
    validate(document)
    return document
