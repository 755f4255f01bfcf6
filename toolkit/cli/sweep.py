from __future__ import annotations

from pathlib import Path

import click

from .table import print_rows


@click.command()
@click.argument("plan_file", metavar="PLAN.toml", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path),
              help="Results, artifacts and the cell log; a rerun with the same folder reuses every cell whose inputs "
                   "did not change [default: PLAN-sweep beside the plan].")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Run the cells on a Ray cluster (e.g. 10.0.0.5:6379): each target's cells on a node that "
                   "advertises the target's name as a custom resource.")
def sweep(plan_file: Path, out: Path | None, ray_address: str | None) -> None:
    """Export, evaluate and profile every checkpoint × type × device cell of a plan; one table, the best cell per
    device, quality-vs-speed plots. Failed cells are reported, not fatal."""
    from ..sweep.api import sweep as run_sweep, write_outputs
    from ..sweep.choose import describe
    from ..sweep.plan import load_plan
    from ..sweep.report import HEADER, best_lines, row

    plan = load_plan(plan_file)
    out = out if out is not None else plan.source.with_name(f"{plan.source.stem}-sweep")
    report = run_sweep(plan, out, ray_address)
    print_rows(HEADER, [row(c) for c in report.cells])
    for cell in report.cells:
        if cell.reason:
            click.echo(f"{cell.status}: {cell.id}: {cell.reason}")
    work = report.work
    reused = sum(c.reused for c in report.cells)
    click.echo(f"\nran {work.exports} exports, {work.evals} evaluations, {work.profiles} profiles; "
               f"{reused} cells reused from the last run")
    click.echo(f"best per target ({describe(plan.choose)}):")
    for line in best_lines(report):
        click.echo(f"  {line}")
    written, no_plots = write_outputs(out, report)
    for path in written:
        click.echo(f"wrote {path}")
    if no_plots:
        click.echo(f"no plots: {no_plots}")

