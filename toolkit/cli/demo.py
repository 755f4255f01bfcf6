from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from ..demo import ARCHS, DEFAULT_SHARD_BYTES, SIZES, STORAGE_DTYPES, build_demo_checkpoint, demo_config
from ..safetensors_io import DTYPES
from ..spec import spec_from_config
from ..tensors import parameter_count


@click.command("demo-checkpoint")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(ARCHS), default="qwen3", show_default=True)
@click.option("--size", type=click.Choice(SIZES), default="tiny", show_default=True,
              help="tiny: 2-3 layers for tests; small: a real 0.5B-class shape.")
@click.option("--dtype", type=click.Choice(STORAGE_DTYPES), default="bfloat16", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-shard-size", type=click.IntRange(min=1), default=DEFAULT_SHARD_BYTES, show_default=True,
              help="Bytes per safetensors shard; larger checkpoints are split with an index.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def demo_checkpoint(out: Path, arch: str, size: str, dtype: str, seed: int, max_shard_size: int, force: bool) -> None:
    """Write a real Qwen checkpoint with seeded random weights and the real Qwen tokenizer."""
    spec = spec_from_config(demo_config(arch, size, dtype))
    total = parameter_count(spec) * DTYPES[{"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[dtype]].itemsize
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"{arch}-{size}", disable=None) as bar:
        build_demo_checkpoint(out, arch, size, dtype, seed, max_shard_size, force, progress=bar.update)
    click.echo(f"wrote {out} ({spec.architecture}, {parameter_count(spec):,} parameters)")
