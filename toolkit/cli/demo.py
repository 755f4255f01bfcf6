from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from ..demo import ARCHS, DEFAULT_SHARD_BYTES, SIZES, STORAGE_DTYPES, build_demo_checkpoint, demo_config
from ..safetensors_io import DTYPES
from ..spec import spec_from_config
from ..tensors import parameter_count

RANDOM_ONLY = ("size", "dtype", "max_shard_size")


@click.command("demo-checkpoint")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(ARCHS), default="qwen3", show_default=True)
@click.option("--size", type=click.Choice(SIZES), default="tiny", show_default=True,
              help="tiny: 2-3 layers for tests; small: a real 0.5B-class shape.")
@click.option("--dtype", type=click.Choice(STORAGE_DTYPES), default="bfloat16", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_BYTES, show_default=True,
              help="Bytes per safetensors shard; larger checkpoints are split with an index.")
@click.option("--trained", is_flag=True,
              help="Train a small qwen2/qwen3 on the CPU (about eight minutes on two cores), deterministically, "
                   "to retrieve passkeys hidden in a generated text and to model that text, instead of random "
                   "weights.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (with --trained).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.pass_context
def demo_checkpoint(ctx: click.Context, out: Path, arch: str, size: str, dtype: str, seed: int, max_shard_size: int,
                    trained: bool, steps: int | None, force: bool) -> None:
    """Write a real Qwen checkpoint with seeded random (or --trained) weights and the real Qwen tokenizer."""
    if trained:
        _trained(ctx, out, arch, seed, steps, force)
        return
    if steps is not None:
        raise click.UsageError("--steps applies only with --trained")
    spec = spec_from_config(demo_config(arch, size, dtype))
    total = parameter_count(spec) * DTYPES[{"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[dtype]].itemsize
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"{arch}-{size}", disable=None) as bar:
        build_demo_checkpoint(out, arch, size, dtype, seed, max_shard_size, force, progress=bar.update)
    click.echo(f"wrote {out} ({spec.architecture}, {parameter_count(spec):,} parameters)")


def _trained(ctx: click.Context, out: Path, arch: str, seed: int, steps: int | None, force: bool) -> None:
    from ..training import TRAINED_ARCHS, build_trained_checkpoint
    from ..training.model import trained_config
    from ..training.train import DEFAULT_STEPS

    if arch not in TRAINED_ARCHS:
        raise click.UsageError(f"--trained builds {' or '.join(TRAINED_ARCHS)}, not the MoE '{arch}'")
    given = [f"--{name.replace('_', '-')}" for name in RANDOM_ONLY
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"--trained has one fixed shape stored as float32; drop {', '.join(given)}")
    steps = steps or DEFAULT_STEPS
    with tqdm(total=steps, unit="step", desc=f"train {arch}", disable=None) as bar:
        def progress(step: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

        build_trained_checkpoint(out, arch, seed, steps, force, progress)
    spec = spec_from_config(trained_config(arch))
    click.echo(f"wrote {out} ({spec.architecture}, trained {steps} steps, {parameter_count(spec):,} parameters)")
