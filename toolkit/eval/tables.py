"""An EvalReport → rows: the side-by-side summary, agreement by position, the needle grids; and Markdown."""

from __future__ import annotations

from typing import Sequence

from ..profiler.outputs.table import size
from .needle import depth_fractions
from .results import FAIL, PASS, SKIPPED, ArtifactResult, CellResult, EvalReport, Speed

Row = tuple[str, ...]
SUMMARY_HEADER = ("model", "kind", "size", "context", "scored", "KL mean", "top-1", "max |Δlogit|", "perplexity",
                  "ppl ratio", "needle", "decode")
# How a needle cell shows: the artifact's status, and whether the reference retrieved it.
CELL_MARK = {(PASS, PASS): "pass", (PASS, FAIL): "pass", (FAIL, PASS): "MISS", (FAIL, FAIL): "fail"}
LEGEND = ("needle cells: pass = retrieved; MISS = not retrieved where the reference retrieves; fail = neither "
          "retrieves; - = beyond the model's context")


def _float(value: float, spec: str) -> str:
    return format(value, spec) if value == value else "nan"


def _rate(speed: Speed | None) -> str:
    return "-" if speed is None else f"{speed.decode_tokens_per_s:.1f} tok/s"


def _needle_share(result: ArtifactResult) -> str:
    match = result.match
    if match is None:
        return "-"
    if match.share is None:
        return "n/a (reference 0)"
    return f"{match.also_passed}/{match.reference_passed} ({match.share:.0%})"


def summary_rows(report: EvalReport) -> list[Row]:
    ref = report.reference
    t = ref.target
    passed = "-" if ref.needle is None else (
        f"{sum(c.status == PASS for c in ref.needle)}/{sum(c.status != SKIPPED for c in ref.needle)}")
    rows = [(f"{t.path.name} (reference)", t.kind, size(t.size_bytes), str(t.context_length or "-"), str(ref.positions),
             "-", "-", "-", _float(ref.perplexity, ".4g"), "1", passed, _rate(ref.speed))]
    for a in report.artifacts:
        t, agree = a.target, a.agreement
        rows.append((t.path.name, t.kind, size(t.size_bytes), str(t.context_length or "-"), str(a.positions),
                     _float(agree.kl_mean, ".2e"), _float(agree.top1, ".1%"), _float(agree.max_abs, ".2e"),
                     _float(a.perplexity.value, ".4g"), _float(a.perplexity.ratio, ".4f"), _needle_share(a),
                     _rate(a.speed)))
    return rows


def bucket_header(report: EvalReport) -> Row:
    longest = max(report.artifacts, key=lambda a: len(a.buckets))
    return ("KL mean / top-1 by position", *(b.label for b in longest.buckets))


def bucket_rows(report: EvalReport) -> list[Row]:
    width = len(bucket_header(report)) - 1
    return [(a.target.path.name, *(f"{_float(b.agreement.kl_mean, '.1e')} / {_float(b.agreement.top1, '.0%')}"
                                   for b in a.buckets), *("-",) * (width - len(a.buckets)))
            for a in report.artifacts]


def grid_header(depths: int) -> Row:
    return ("context \\ depth", *(f"{d:.0%}" for d in depth_fractions(depths)))


def grid_rows(cells: tuple[CellResult, ...], reference: tuple[CellResult, ...], depths: int) -> list[Row]:
    marks = ["-" if c.status == SKIPPED or r.status == SKIPPED else CELL_MARK[c.status, r.status]
             for c, r in zip(cells, reference)]
    return [(str(cells[i].cell.context), *marks[i:i + depths]) for i in range(0, len(cells), depths)]


def markdown(header: Sequence[str], rows: list[Row]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)]) + "\n"
