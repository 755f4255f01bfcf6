"""sweep(): a plan in, every cell exported, evaluated and profiled (or reused, skipped, failed), outputs written.

OUT holds the outputs (sweep.json, sweep.md, PNGs), the artifacts and state/ (the cell log), so a rerun
with the same OUT picks up where the last one stopped. Each cell is logged the moment it finishes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..atomic import atomic_file, check_output
from ..errors import MissingDependencyError, OutputError
from .cells import cell_result
from .choose import choose
from .matrix import CellSpec, Matrix, expand
from .plan import Plan
from .progress import Progress
from .report import SweepReport, document, markdown, validate
from .results import Built, CellResult
from .schedule import Outcomes, Runner, Schedule, Work
from .state import STATE, Store, cell_key

ARTIFACTS = "artifacts"


def prepare_out(out: Path, plan: Plan) -> Path:
    """The absolute --out folder, created; refused when it holds something that is not a sweep."""
    out = check_output(out, plan.checkpoints.values())
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is a file; expected a folder", out)
    if out.is_dir() and any(out.iterdir()) and not (out / STATE).is_dir():
        raise OutputError(f"exists, is not empty and holds no earlier sweep (no {STATE}/ folder); choose another "
                          "--out", out)
    (out / STATE).mkdir(parents=True, exist_ok=True)
    return out


def _runner(plan: Plan, out: Path, ray_address: str | None, matrix: Matrix) -> tuple[Runner, Path]:
    if ray_address is None:
        from .local import LocalRunner

        folder = out / ARTIFACTS
        folder.mkdir(exist_ok=True)
        return LocalRunner(plan, folder), folder
    from .cluster import ClusterRunner

    folder = plan.cluster.shared if plan.cluster.shared is not None else out / ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    return ClusterRunner(plan, folder, ray_address, matrix.specs), folder


def _run(plan: Plan, matrix: Matrix, runner: Runner, store: Store, folder: Path,
         progress: bool) -> tuple[dict[str, CellResult], Work]:
    keys = {c.id: cell_key(c.artifact.key, c.profile, plan, runner.mode) for c in matrix.cells}
    results: dict[str, CellResult] = {}
    for cell in matrix.cells:
        logged = store.cell(cell.id, keys[cell.id])
        if logged is not None:
            results[cell.id] = replace(logged, reused=True)
    todo = [c for c in matrix.cells if c.id not in results]
    reusable: dict[str, Built] = {}
    for artifact in {c.artifact.name: c.artifact for c in todo}.values():
        built = store.artifact(artifact.name, artifact.key, folder)
        if built is not None:
            reusable[artifact.name] = built

    def finished(cell: CellSpec, outcomes: Outcomes, place: str) -> None:
        name = cell.artifact.name
        built = outcomes.built[name]
        result = cell_result(cell, keys[cell.id], built, outcomes.quality.get((name, place)),
                             outcomes.speed.get((name, place, cell.device)))
        if isinstance(built, Built):
            store.save_artifact(cell.artifact.key, built)
        store.save_cell(result)
        results[cell.id] = result

    bars = Progress(len(todo), 2 + bool(plan.eval.metrics), progress)
    try:
        work = Schedule(todo, runner, bool(plan.eval.metrics), finished, bars).run(reusable)
    finally:
        bars.close()
    return results, work


def sweep(plan: Plan, out: Path, ray_address: str | None = None, progress: bool = True) -> SweepReport:
    """Run (or resume) the plan's matrix; failed cells are reported in the results, never raised."""
    if ray_address is not None:
        from .cluster import require_ray

        require_ray()
    out = prepare_out(out, plan)
    matrix = expand(plan)
    store = Store(out)
    runner, folder = _runner(plan, out, ray_address, matrix)
    try:
        results, work = _run(plan, matrix, runner, store, folder, progress)
    finally:
        runner.close()
    results.update({c.id: c for c in matrix.closed})
    cells = tuple(results[cid] for cid in matrix.order)
    choices = choose(cells, [p.name for p in plan.targets], plan.choose)
    return SweepReport(plan, cells, choices, work, runner.mode, ray_address)


def write_outputs(out: Path, report: SweepReport) -> tuple[list[Path], str | None]:
    """sweep.json (validated), sweep.md and the PNGs, each written whole or not at all; and why there are no
    PNGs, when matplotlib is missing (the figures are not lost for want of a plot)."""
    from .plot import write_plots

    doc = document(report)
    validate(doc)
    try:
        plots, missing = write_plots(out, report), None
    except MissingDependencyError as exc:
        plots, missing = [], str(exc)
    written = []
    for name, text in (("sweep.json", json.dumps(doc, indent=2) + "\n"),
                       ("sweep.md", markdown(report, [p.name for p in plots], missing))):
        with atomic_file(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(out / name)
    return written + plots, missing
