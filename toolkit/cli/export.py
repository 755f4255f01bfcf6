from __future__ import annotations

from pathlib import Path

import click

from ...backends import BACKENDS
from ..checkpoint import open_checkpoint
from ..errors import QwdeployError, UnsupportedModelError
from ..bundle.plan import describe, memory_plan
from ..profiles import load_profile
from ..selection import FORMATS, choose
from .table import print_rows


@click.command()
@click.argument("model")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Default: with --profile, what the profile prefers that fits; else gguf.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output file (gguf) or folder (onnx).")
@click.option("--quant", help="Weight type, e.g. f16, q8_0, q4_k_m (gguf); f32, f16, bf16, int4, int8 (onnx). "
              "Default: with --profile, the first the profile prefers whose memory plan fits its budget.")
@click.option("--profile", help="Device profile name or TOML path; picks format, type and backend for the target.")
@click.option("--target", help=f"ONNX: hand the portable graph to this device backend ({', '.join(BACKENDS.names())}; "
              "default with --profile: the profile's).")
@click.option("--via", type=click.Choice(["native", "optimum"]), default="native", show_default=True,
              help="ONNX: build the graph natively or trace it with optimum.")
@click.option("--verify/--no-verify", default=None,
              help="Compare the artifact's logits with transformers' (default: on for models under 1B parameters).")
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Backend option for --target (see `qwdeploy backends`), e.g. -O block_size=64.")
@click.option("--explain", is_flag=True, help="With --target: list each fusion candidate rejected, and why.")
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
@click.option("--trust-pickle", is_flag=True, help="Allow *.bin/*.pt pickle weights (they can run code).")
def export(model: str, fmt: str | None, out: Path, quant: str | None, profile: str | None, target: str | None,
           via: str, verify: bool | None, options: tuple[str, ...], explain: bool, force: bool,
           trust_pickle: bool) -> None:
    """Convert a Hugging Face Qwen checkpoint (MODEL directory) into a GGUF file or an ONNX folder."""
    from ...exporters import EXPORTERS
    from ...exporters.request import ExportRequest

    device = load_profile(profile) if profile else None
    ckpt = open_checkpoint(model, trust_pickle=trust_pickle)
    if device is not None and quant is None:
        choice = choose(ckpt.spec, device, fmt)
        fmt, quant = choice.chosen.format, choice.chosen.quant
        click.echo(f"{device.name}: {choice.chosen}, the first type it prefers whose estimated memory fits")
        print_rows(None, choice.reasons())
    fmt = fmt or "gguf"
    if device is not None and fmt == "onnx" and target is None:
        target = device.deploy.backend
    exporter = EXPORTERS.get(fmt)
    reason = exporter.unsupported_reason(ckpt.spec)
    if reason:
        raise UnsupportedModelError(f"cannot export to {fmt}: {reason}", ckpt.directory)
    ckpt.validate()
    backend_options = dict(o.partition("=")[::2] for o in options)
    if explain:
        backend_options["explain"] = "true"
    if backend_options and target is None:
        raise QwdeployError("-O/--explain configure a backend; add --target")
    request = ExportRequest(ckpt, out, quant=quant, profile=device, target=target,
                            via=via, force=force, verify=verify, options=backend_options)
    result = exporter.export(request)
    fit = [(f"fits {device.name}" if plan.fits else f"does NOT fit {device.name}", describe(plan))
           for plan in ([memory_plan(result.path, fmt, device)] if device else [])]
    print_rows(None, [("wrote", str(result.path)), *result.summary, *fit])

