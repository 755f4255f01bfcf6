from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import click

from ..bundle.manifest import MANIFEST
from ..devices import DEVICES
from .package import ARCHIVE_SUFFIX, MAX_UNPACKED_BYTES
from ..layout import artifact_kind
from ..profiler.artifacts import preflight
from ..runtimes.generate import Request, Stats, check_runnable, describe, stream, stream_isolated


@click.command("run")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--prompt", required=True, help="The text to continue (or, with --chat, the user's message).")
@click.option("--chat", is_flag=True, help="Wrap the prompt in the artifact's chat template as one user turn.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Stop after this many generated tokens.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="0 is greedy; above 0 samples from softmax(logits / temperature).")
@click.option("--seed", type=int, help="Seed for sampling (ignored when greedy).")
@click.option("--device", type=click.Choice(list(DEVICES)), default="cpu", show_default=True)
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Run the engine in a child process, so a native crash is reported instead of fatal.")
def run(artifact: Path, prompt: str, chat: bool, max_tokens: int, temperature: float, seed: int | None,
        device: str, isolate: bool) -> None:
    """Generate text from an ONNX folder, a GGUF file or a bundle (folder or .tar.gz; verified first),
    streamed to stdout; timings go to stderr."""
    with ExitStack() as stack:
        if (artifact / MANIFEST).is_file() or artifact.name.endswith(ARCHIVE_SUFFIX):
            artifact = _bundled_model(artifact, stack)
        _generate(artifact, prompt, chat, max_tokens, temperature, seed, device, isolate)


def _bundled_model(bundle: Path, stack: ExitStack) -> Path:
    """The model inside a bundle, after every file in it matched its manifest."""
    from ..atomic import scratch_directory
    from ..bundle.archive import open_bundle
    from ..bundle.manifest import BundleManifest
    from ..bundle.verify import verify_bundle

    if bundle.name.endswith(ARCHIVE_SUFFIX):
        bundle = open_bundle(bundle, stack.enter_context(scratch_directory(bundle)), MAX_UNPACKED_BYTES)
    verify_bundle(bundle)
    return bundle / BundleManifest.read(bundle).model


def _generate(artifact: Path, prompt: str, chat: bool, max_tokens: int, temperature: float, seed: int | None,
              device: str, isolate: bool) -> None:
    kind = artifact_kind(artifact)
    check_runnable(artifact, kind)
    preflight(artifact, kind)  # a damaged artifact is refused here, before a native engine reads it
    request = Request(artifact, kind, device, prompt, chat, max_tokens, temperature, seed)
    for item in (stream_isolated if isolate else stream)(request):
        if isinstance(item, Stats):
            click.echo()
            for line in describe(item):
                click.echo(line, err=True)
        else:
            click.echo(item, nl=False)  # click flushes, so each piece shows as it comes
