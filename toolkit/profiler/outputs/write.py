"""Every output of a profile (or a comparison) into one directory, atomically."""

from __future__ import annotations

import json
from pathlib import Path

from ...atomic import atomic_directory
from ..runner import Measurement
from ..schema import validate
from .png import write_png
from .table import compare_rows
from .trace import trace_events


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_outputs(out: Path, docs: list[dict], measurements: list[Measurement], force: bool = False,
                  png: bool = True, inputs: tuple[Path, ...] = ()) -> list[Path]:
    """profile.json, trace.json, profile.png (one profile); profile-N.json/png and compare.json (several)."""
    for doc in docs:
        validate(doc)
    names = ["profile"] if len(docs) == 1 else [f"profile-{i + 1}" for i in range(len(docs))]
    with atomic_directory(out, force=force, inputs=inputs) as tmp:
        for name, doc in zip(names, docs):
            _json(tmp / f"{name}.json", doc)
            if png:
                write_png(doc, tmp / f"{name}.png")
        _json(tmp / "trace.json", trace_events(measurements))
        if len(docs) > 1:
            _json(tmp / "compare.json", {"schema": "qwdeploy.profile.compare", "artifacts": [d["artifact"]["path"] for d in docs],
                                         "rows": [list(r) for r in compare_rows(docs)]})
        written = sorted(p.name for p in tmp.iterdir())
    return [out / name for name in written]
