from __future__ import annotations

from pathlib import Path

import click

from ..atomic import check_output
from ..errors import QualityGateError, QwdeployError
from ..eval.options import DEFAULT_CONTEXTS, DEFAULT_DEPTHS, DEFAULT_POSITIONS
from .table import print_rows


@click.command("eval")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reference", type=click.Path(path_type=Path),
              help="The checkpoint the artifacts came from, run in transformers fp32 (default: the first checkpoint "
                   "among ARTIFACTS).")
@click.option("--text", type=click.Path(path_type=Path),
              help="UTF-8 text for agreement and perplexity (default: built-in text, no download).")
@click.option("--positions", type=click.IntRange(min=2), default=DEFAULT_POSITIONS, show_default=True,
              help="Text tokens scored, further capped by each artifact's context.")
@click.option("--needle", is_flag=True, help="Needle in a haystack: retrieve a passkey hidden in filler text.")
@click.option("--contexts", help=f"Needle grid rows, in tokens [default: {DEFAULT_CONTEXTS}].")
@click.option("--depths", type=click.IntRange(min=1), help=f"Needle grid columns [default: {DEFAULT_DEPTHS}].")
@click.option("--profile-json", "profiles", multiple=True, type=click.Path(path_type=Path),
              help="A `qwdeploy profile` document (profile.json) of an artifact, for tokens/s; repeatable.")
@click.option("--max-kl", type=float, help="Fail when an artifact's mean KL exceeds this (nats).")
@click.option("--max-ppl-ratio", type=float,
              help="Fail when an artifact's perplexity over the reference's exceeds this, e.g. 1.01.")
@click.option("--min-needle", type=float,
              help="Fail when an artifact retrieves less than this share of the needles the reference retrieves.")
@click.option("--out", type=click.Path(path_type=Path), help="Write eval.json, eval.md and the PNGs here.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def eval_command(artifacts: tuple[Path, ...], reference: Path | None, text: Path | None, positions: int, needle: bool,
                 contexts: str | None, depths: int | None, profiles: tuple[Path, ...], max_kl: float | None,
                 max_ppl_ratio: float | None, min_needle: float | None, out: Path | None, force: bool) -> None:
    """How closely artifacts (GGUF files, ONNX folders, checkpoints) still compute their checkpoint: logit
    agreement by position, perplexity, needle-in-a-haystack retrieval, side by side. Exits 5 when a gate fails."""
    from ..eval.api import evaluate
    from ..eval.options import EvalOptions, Gates, NeedleOptions, parse_contexts

    if not needle and (contexts is not None or depths is not None):
        raise QwdeployError("--contexts and --depths shape the needle grid: add --needle")
    grid = NeedleOptions(parse_contexts(contexts or DEFAULT_CONTEXTS), depths or DEFAULT_DEPTHS) if needle else None
    inputs = (*artifacts, *((reference,) if reference else ()))
    if out is not None:
        check_output(out, inputs)
        if out.exists() and not force and (out.is_file() or any(out.iterdir())):
            raise QwdeployError("exists and is not empty (pass --force to replace it)", out)
    options = EvalOptions(artifacts, reference, text, positions, grid, profiles,
                          Gates(max_kl, max_ppl_ratio, min_needle))
    report = evaluate(options)
    _print(report)
    if out is not None:
        from ..eval.outputs import write_outputs

        for path in write_outputs(out, report, force=force, inputs=inputs):
            click.echo(f"wrote {path}")
    if report.failures:
        raise QualityGateError("; ".join(report.failures))
    if options.gates != Gates():
        click.echo("every gate passed")


def _print(report) -> None:
    from ..eval.results import notes
    from ..eval.tables import (LEGEND, SUMMARY_HEADER, bucket_header, bucket_rows, grid_header, grid_rows,
                               summary_rows)

    print_rows(SUMMARY_HEADER, summary_rows(report))
    if report.artifacts:
        click.echo()
        print_rows(bucket_header(report), bucket_rows(report))
    ref, needle = report.reference, report.options.needle
    if ref.needle is not None and needle is not None:
        click.echo(f"\n{LEGEND}")
        for name, cells in [(f"{ref.target.path.name} (reference)", ref.needle),
                            *((a.target.path.name, a.needle) for a in report.artifacts)]:
            click.echo(f"\n{name}")
            print_rows(grid_header(needle.depths), grid_rows(cells, ref.needle, needle.depths))
    for name, note in notes(report):
        click.echo(f"note: {name}: {note}")
