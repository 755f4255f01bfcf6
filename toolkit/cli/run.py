from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import click

from ..bundle.manifest import MANIFEST
from ..devices import DEVICES
from ..errors import EngineError, QwdeployError
from .package import ARCHIVE_SUFFIX, MAX_UNPACKED_BYTES
from ..layout import artifact_kind
from ..profiler.artifacts import preflight

PROMPT_MARK = "> "
from ..runtimes.generate import Generator, InProcess, Isolated, Request, Stats, check_runnable, describe


@click.command("run")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--prompt", help="The text to continue (or, with --chat, the user's message). Without it: an "
              "interactive conversation on stdin, in the chat template when the artifact has one.")
@click.option("--chat/--no-chat", default=None, help="Wrap the prompt in the artifact's chat template as a user turn "
              "[--prompt: off; interactive: on when the artifact has a template].")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Stop after this many generated tokens.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="0 is greedy; above 0 samples from softmax(logits / temperature).")
@click.option("--seed", type=int, help="Seed for sampling (ignored when greedy).")
@click.option("--device", type=click.Choice(list(DEVICES)), default="cpu", show_default=True)
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Run the engine in a child process, so a native crash is reported instead of fatal.")
def run(artifact: Path, prompt: str | None, chat: bool | None, max_tokens: int, temperature: float, seed: int | None,
        device: str, isolate: bool) -> None:
    """Generate text from an ONNX folder, a GGUF file or a bundle (folder or .tar.gz; verified first),
    streamed to stdout; timings go to stderr. Without --prompt, converse: each line read is a turn, and
    the conversation so far is kept (an empty line or end of input ends it)."""
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


def _generate(artifact: Path, prompt: str | None, chat: bool | None, max_tokens: int, temperature: float,
              seed: int | None, device: str, isolate: bool) -> None:
    kind = artifact_kind(artifact)
    check_runnable(artifact, kind)
    preflight(artifact, kind)  # a damaged artifact is refused here, before a native engine reads it
    model: Generator = (Isolated if isolate else InProcess)(artifact, kind, device)
    try:
        if prompt is not None:
            _answer(model, Request(artifact, kind, device, prompt, bool(chat), max_tokens, temperature, seed))
        else:
            _converse(model, Request(artifact, kind, device, "", chat, max_tokens, temperature, seed))
    finally:
        model.close()


def _answer(model: Generator, request: Request) -> str:
    """Stream one reply to stdout and its timings to stderr; returns the reply's text."""
    text = ""
    for item in model.reply(request):
        if isinstance(item, Stats):
            click.echo()
            for line in describe(item):
                click.echo(line, err=True)
        else:
            text += item
            click.echo(item, nl=False)  # click flushes, so each piece shows as it comes
    return text


def _converse(model: Generator, first: Request) -> None:
    history: tuple[tuple[str, str], ...] = ()
    interactive = sys.stdin.isatty()
    while True:
        line = _read_turn(interactive)
        if not line:
            return
        request = replace(first, prompt=line, history=history)
        try:
            history += ((line, _answer(model, request)),)
        except QwdeployError as exc:
            if isinstance(exc, EngineError):
                raise
            click.secho(f"error: {exc}", fg="red", err=True)  # this turn is dropped; the conversation goes on


def _read_turn(interactive: bool) -> str:
    try:
        return input(PROMPT_MARK if interactive else "").strip()
    except EOFError:
        return ""
