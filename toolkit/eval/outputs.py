"""Every output of an evaluation into one directory, atomically: eval.json, eval.md and the PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..atomic import atomic_directory
from .plot import needle_title, write_agreement, write_heatmap
from .report import build_document
from .results import EvalReport, notes
from .tables import (LEGEND, SUMMARY_HEADER, bucket_header, bucket_rows, grid_header, grid_rows, markdown,
                     summary_rows)

JSON_FILE, TABLE_FILE, AGREEMENT_PNG = "eval.json", "eval.md", "agreement.png"


def heatmap_name(index: int | None, artifact: Path) -> str:
    """needle-reference.png, or needle-<n>-<name>.png for the n-th artifact (names may repeat across folders)."""
    if index is None:
        return "needle-reference.png"
    return f"needle-{index}-{re.sub(r'[^A-Za-z0-9._-]', '_', artifact.name)}.png"


def _needle_sections(report: EvalReport) -> list[str]:
    ref, needle = report.reference, report.options.needle
    if ref.needle is None or needle is None:
        return []
    sections = ["## Needle in a haystack\n", LEGEND + "\n",
                f"### {ref.target.path.name} (reference)\n", markdown(grid_header(needle.depths),
                                                                      grid_rows(ref.needle, ref.needle, needle.depths))]
    for a in report.artifacts:
        if a.needle is not None:
            sections += [f"### {a.target.path.name}\n", markdown(grid_header(needle.depths),
                                                                 grid_rows(a.needle, ref.needle, needle.depths))]
    return sections


def markdown_report(report: EvalReport) -> str:
    ref = report.reference
    parts = ["# qwdeploy eval\n",
             f"Reference: `{ref.target.path}` ({ref.target.engine}). Text: {report.text.source}, "
             f"{report.text_tokens} tokens, the first {ref.positions} scored.\n",
             markdown(SUMMARY_HEADER, summary_rows(report))]
    if report.artifacts:
        parts += ["## Agreement by position\n", markdown(bucket_header(report), bucket_rows(report))]
    parts += _needle_sections(report)
    lines = [f"- {name}: {note}" for name, note in notes(report)]
    if lines:
        parts += ["## Notes\n", "\n".join(lines) + "\n"]
    if report.failures:
        parts += ["## Gates not met\n", "\n".join(f"- {line}" for line in report.failures) + "\n"]
    return "\n".join(parts)


def write_outputs(out: Path, report: EvalReport, force: bool = False, inputs: tuple[Path, ...] = ()) -> list[Path]:
    document = build_document(report)
    with atomic_directory(out, force=force, inputs=inputs) as tmp:
        (tmp / JSON_FILE).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / TABLE_FILE).write_text(markdown_report(report), encoding="utf-8")
        if report.artifacts:
            write_agreement(report, tmp / AGREEMENT_PNG)
        ref, needle = report.reference, report.options.needle
        if ref.needle is not None and needle is not None:
            write_heatmap(needle_title(f"{ref.target.path.name} (reference)", ref.needle, ref.needle), ref.needle,
                          ref.needle, needle.depths, tmp / heatmap_name(None, ref.target.path))
            for i, a in enumerate(report.artifacts, 1):
                if a.needle is not None:
                    write_heatmap(needle_title(a.target.path.name, a.needle, ref.needle), a.needle, ref.needle,
                                  needle.depths, tmp / heatmap_name(i, a.target.path))
        written = sorted(p.name for p in tmp.iterdir())
    return [out / name for name in written]
