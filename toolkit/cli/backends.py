from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ..errors import ArtifactError, QwdeployError
from ..layout import MODEL_FILE, artifact_kind
from ..profiles import DeviceProfile, load_profile
from .table import print_rows

# How `backends check` names a placement (backends/cann/support.py's Placement values).
LABELS = {"npu": "NPU", "aicpu": "AI CPU", "cpu": "CPU", "unverified": "unverified", "refused": "refused"}


@click.group(invoke_without_command=True)
@click.pass_context
def backends(ctx: click.Context) -> None:
    """The device backends `export --target` can hand the portable graph to, whether they run here,
    and the -O options each takes. `backends check` says where an artifact's ops run on a device."""
    if ctx.invoked_subcommand is None:
        _list_backends()


def _list_backends() -> None:
    from ...backends import BACKENDS
    from ...backends.base import option_fields

    rows, options = [], []
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)
        ok, reason = backend.availability()
        rows.append((name, "yes" if ok else "no", ", ".join(backend.quants), reason))
        for key, (option, default) in option_fields(backend.defaults).items():
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default).lower()
            options.append((name, key, shown or "-", "/".join(option.quants) or "all", option.help))
    print_rows(("name", "available", "quant", "details"), rows)
    click.echo("")
    print_rows(("backend", "-O option", "default", "quant", "meaning"), options)


@backends.command("check")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--profile", "profile_name", required=True, help="Device profile name or TOML path (an Ascend one).")
def check(artifact: Path, profile_name: str) -> None:
    """Where each op type of ARTIFACT (an ONNX folder or a GGUF file) runs on the profile's Ascend device: NPU,
    CPU fallback (the AI CPU, for ATC graphs) or refused, with counts and reasons. Exits 1 when ATC would
    refuse a node."""
    profile = load_profile(profile_name)
    if profile.accelerator.kind != "ascend":
        raise QwdeployError(f"backends check knows Ascend (CANN) devices only; profile '{profile.name}' has "
                            f"accelerator kind '{profile.accelerator.kind}'")
    kind = artifact_kind(artifact)
    if kind == "onnx":
        _check_onnx(artifact, profile)
    elif kind == "gguf":
        _check_gguf(artifact, profile)
    else:
        raise QwdeployError("backends check reads an ONNX folder or a GGUF file, not a checkpoint", artifact)


def _check_onnx(folder: Path, profile: DeviceProfile) -> None:
    import onnx

    from ...backends.cann.support import Placement, model_opset, preflight, release

    try:
        model = onnx.load(str(folder / MODEL_FILE), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for damaged bytes
        raise ArtifactError(f"not a readable ONNX model ({type(exc).__name__})", folder / MODEL_FILE) from None
    version = profile.accelerator.cann_version
    findings = preflight(model, version)
    checked = release(version).checked
    groups = Counter((f.op_type, f.placement, f.reason, f.rewrite) for f in findings)
    rows = [(op, n, LABELS[placement.value], reason, rewrite or "-")
            for (op, placement, reason, rewrite), n in sorted(groups.items(), key=lambda g: (-g[0][1].rank, g[0][0]))]
    click.echo(f"{folder}: opset {model_opset(model)}, {len(findings)} nodes, against CANN {version}'s ONNX operator "
               f"list as read {checked} ({profile.name}, {profile.accelerator.soc_version})")
    print_rows(("op", "nodes", "runs", "why", "rewrite"), rows)
    totals = Counter(f.placement for f in findings)
    click.echo(", ".join(f"{totals[p]} {LABELS[p.value]}" for p in sorted(totals, key=lambda p: p.rank)))
    refused = sorted({f.op_type for f in findings if f.placement is Placement.REFUSED})
    if refused:
        raise QwdeployError(f"CANN {version}'s ATC would refuse {totals[Placement.REFUSED]} nodes "
                            f"({', '.join(refused)}): see the rewrites above")


def _check_gguf(path: Path, profile: DeviceProfile) -> None:
    from ...backends.cann.gguf_support import npu_gguf_type, type_uses
    from ...backends.cann.support import Placement
    from ...exporters.gguf.reader import GGUFFile

    uses = type_uses(GGUFFile(path), profile)
    click.echo(f"{path}: GGUF, {sum(u.tensors for u in uses)} tensors, with llama.cpp's CANN backend on "
               f"{profile.accelerator.soc_version} ({profile.name})")
    print_rows(("type", "tensors", "matrices", "matmuls", "why"),
               [(u.qtype, u.tensors, u.matrices, LABELS[u.placement.value], u.reason) for u in uses])
    best = npu_gguf_type(profile)
    if any(u.matrices and u.placement is not Placement.NPU for u in uses) and best.placement is Placement.NPU:
        click.echo(f"for NPU matmuls: --quant {best.quant} ({best.reason})")
