"""A finished sweep → sweep.json (sweep.schema.json, validated before it is written) and sweep.md."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources

from .. import __version__
from ..profiler.schema import check_document
from .choose import Choice, describe
from .plan import Plan
from .results import DONE, FAILED, SKIPPED, CellResult
from .schedule import Work

SCHEMA_ID = "qwdeploy.sweep"
SCHEMA_VERSION = 1
SCHEMA_FILE = "sweep.schema.json"
MIB = 2**20
HEADER = ("cell", "status", "size MiB", "ppl", "ppl ratio", "KL", "top-1", "TTFT ms", "decode tok/s", "peak MiB",
          "USD/1M tok", "fits", "ran on")


@dataclass(frozen=True)
class SweepReport:
    plan: Plan
    cells: tuple[CellResult, ...]  # in plan order, skipped ones included
    choices: tuple[Choice, ...]  # one per target
    work: Work
    runner: str  # "local" or "ray"
    address: str | None  # the Ray cluster's


@lru_cache(maxsize=1)
def sweep_schema() -> dict:
    return json.loads(resources.files("qwdeploy.toolkit.sweep").joinpath(SCHEMA_FILE).read_text("utf-8"))


def validate(document: dict) -> None:
    check_document(document, sweep_schema(), "sweep")


def _plan(plan: Plan) -> dict:
    return {"path": str(plan.source), "checkpoints": {n: str(p) for n, p in plan.checkpoints.items()},
            "export": {f: list(q) for f, q in plan.export.items()}, "targets": [p.name for p in plan.targets],
            "eval": {**asdict(plan.eval), "metrics": list(plan.eval.metrics),
                     "text": None if plan.eval.text is None else str(plan.eval.text)},
            "profile": asdict(plan.profile), "choose": asdict(plan.choose),
            "cluster": {"shared": None if plan.cluster.shared is None else str(plan.cluster.shared)}}


def document(report: SweepReport) -> dict:
    doc = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "qwdeploy_version": __version__,
        "plan": _plan(report.plan),
        "runner": {"kind": report.runner, "address": report.address},
        "work": asdict(report.work),
        "rule": describe(report.plan.choose),
        "cells": [asdict(c) for c in report.cells],
        "best": [asdict(c) for c in report.choices],
    }
    return json.loads(json.dumps(doc, default=str))  # paths as strings, as the schema says


def _number(value: float | None, scale: float = 1, digits: int = 4) -> str:
    return "-" if value is None else f"{value / scale:.{digits}g}"


def row(cell: CellResult) -> tuple[str, ...]:
    q, s = cell.quality, cell.speed
    where = s.where if s else q.where if q else None
    return (cell.id, cell.status,
            _number(cell.artifact.size_bytes if cell.artifact else None, MIB),
            _number(q.perplexity if q else None), _number(q.ppl_ratio if q else None),
            _number(q.kl_mean if q else None, digits=3), _number(q.top1 if q else None, digits=3),
            _number(s.ttft_s * 1e3 if s else None), _number(s.decode_tokens_per_s if s else None),
            _number(s.peak_bytes if s else None, MIB), _number(cell.usd_per_million_tokens),
            "-" if cell.fit is None else "yes" if cell.fit.fits else "no",
            "-" if where is None else where.label(cell.target))


def best_lines(report: SweepReport) -> list[str]:
    return [f"{c.target}: {c.cell or 'none'} ({c.why})" for c in report.choices]


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(report: SweepReport, plots: list[str], no_plots: str | None = None) -> str:
    count = Counter(c.status for c in report.cells)
    lines = [f"# qwdeploy sweep: {report.plan.source.name}", "",
             f"{len(report.cells)} cells: {count[DONE]} done, {count[FAILED]} failed, {count[SKIPPED]} skipped; "
             + (f"ran on the Ray cluster at {report.address}" if report.address
                else "ran on this machine, which stands in for every target")
             + ". Cost from each profile's deploy.usd_per_hour; fits: the memory plan `package` uses.", "",
             "| " + " | ".join((*HEADER, "note")) + " |", "|" + " --- |" * (len(HEADER) + 1)]
    lines += ["| " + " | ".join(_escape(v) for v in (*row(c), c.reason or "")) + " |" for c in report.cells]
    lines += ["", f"## Best per target: {describe(report.plan.choose)}", ""]
    lines += [f"- {_escape(line)}" for line in best_lines(report)]
    lines += [line for name in plots for line in ("", f"![{name}]({name})")]
    lines += ["", f"No plots: {no_plots}"] if no_plots else []
    return "\n".join(lines) + "\n"
