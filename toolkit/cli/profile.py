from __future__ import annotations

import math
from pathlib import Path

import click

from ..atomic import check_output
from ..errors import QwdeployError
from ..devices import DEVICES
from ..profiles import load_profile
from .table import print_rows


def _ints(value: str | None, flag: str) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise QwdeployError(f"{flag} takes comma-separated integers, e.g. 1,4,8; got '{value}'") from None
    if any(n < 1 for n in numbers):
        raise QwdeployError(f"{flag} values must be positive; got '{value}'")
    return numbers


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _options(pairs: tuple[str, ...]) -> dict[str, str]:
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise QwdeployError(f"--option takes KEY=VALUE; got '{bad[0]}'")
    return dict(p.split("=", 1) for p in pairs)


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--compare", is_flag=True, help="Profile several artifacts, runs interleaved, and print ratios to the first.")
@click.option("--device", type=click.Choice(list(DEVICES)), default="cpu", show_default=True)
@click.option("--prompt-len", type=click.IntRange(min=1), default=128, show_default=True,
              help="Prompt tokens per sequence.")
@click.option("--gen", type=click.IntRange(min=2), default=64, show_default=True,
              help="Generated tokens per sequence (first from prefill).")
@click.option("--runs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Counted runs, after one warm-up run.")
@click.option("--batch", "batch", help="Sweep batch sizes, e.g. 1,4,8 (the first is also the main run's batch).")
@click.option("--context", "context", help="Sweep KV lengths reached at the end of generation, e.g. 128,1024,4096.")
@click.option("--threads", type=click.IntRange(min=1), help="Runtime threads (default: the runtime's own choice).")
@click.option("--profile", "profile_name", help="Device profile (name or TOML): memory budget and price per hour.")
@click.option("--usd-per-hour", type=click.FloatRange(min=0, min_open=True), callback=_finite,
              help="Price of the machine; overrides the profile's.")
@click.option("--option", "options", multiple=True, help="Collector option KEY=VALUE, e.g. graph_optimization=disabled (ONNX).")
@click.option("--out", type=click.Path(path_type=Path), help="Write profile.json, trace.json and profile.png here.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Measure in a fresh child process per artifact (clean peak RSS; an engine crash becomes one line).")
def profile(artifacts: tuple[Path, ...], compare: bool, device: str, prompt_len: int, gen: int, runs: int,
            batch: str | None, context: str | None, threads: int | None, profile_name: str | None,
            usd_per_hour: float | None, options: tuple[str, ...], out: Path | None, force: bool, isolate: bool) -> None:
    """Measure what an artifact (ONNX folder, GGUF file, HF checkpoint) costs on a device."""
    from ..profiler.api import profile as run_profile
    from ..profiler.outputs.table import compare_rows, op_rows, summary_rows, sweep_rows
    from ..profiler.runner import Settings

    if compare and len(artifacts) < 2:
        raise QwdeployError("--compare needs at least two artifacts")
    if not compare and len(artifacts) > 1:
        raise QwdeployError("several artifacts given: pass --compare to profile them side by side")
    batches, contexts = _ints(batch, "--batch"), _ints(context, "--context")
    settings = Settings(prompt_len=prompt_len, gen=gen, runs=runs, batch=batches[0] if batches else 1,
                        batches=batches if len(batches) > 1 else (), contexts=contexts)
    device_profile = load_profile(profile_name) if profile_name else None
    if out is not None:
        check_output(out, artifacts)
        if out.exists() and not force and (out.is_file() or any(out.iterdir())):
            raise QwdeployError("exists and is not empty (pass --force to replace it)", out)
    docs, measurements = run_profile(list(artifacts), device, settings, threads, _options(options), device_profile,
                                     usd_per_hour, isolate=isolate, progress=True)
    for doc in docs:
        print_rows(None, summary_rows(doc))
        click.echo()
        print_rows(("op", "per step", "time", "share"), op_rows(doc))
        if doc["sweep"]:
            click.echo()
            print_rows(("sweep", "batch", "context", "decode", "step", "TTFT", "peak RSS", "KV", "fits", "USD/1M"),
                       sweep_rows(doc))
        click.echo()
    if compare:
        print_rows(("figure", *(p.name for p in artifacts)), compare_rows(docs))
    if out is not None:
        from ..profiler.outputs.write import write_outputs

        for path in write_outputs(out, docs, measurements, force=force, inputs=artifacts):
            click.echo(f"wrote {path}")
