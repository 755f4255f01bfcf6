from __future__ import annotations

import click

from .table import print_rows


@click.group()
def kernels() -> None:
    """Fused-op kernels (the `qwdeploy` ONNX Runtime custom-op domain): build and list."""


@kernels.command("build")
@click.option("--target", default="host", show_default=True,
              help="'host' (this machine, -march=native), 'portable' (any CPU of this architecture: one "
                   "build per ISA, picked at load time; what CPU exports carry) or a device profile name / .toml path")
@click.option("--cuda-arch", default=None, help="CUDA architectures to build for, e.g. sm_87,sm_90 "
              "(default: the profile's accelerator.cuda_arch; none for host)")
@click.option("--ort-include", type=click.Path(file_okay=False), default=None,
              help="folder holding onnxruntime_cxx_api.h (default: $QWDEPLOY_ORT_INCLUDE, else Debian's "
                   "libonnxruntime-dev fetched into the cache)")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="parallel compile jobs [all cores]")
@click.option("--force", is_flag=True, help="rebuild even when the cache holds this build")
def build_cmd(target: str, cuda_arch: str | None, ort_include: str | None, jobs: int | None, force: bool) -> None:
    """Compile the kernels for a target (cached by sources + target + compiler) and print the library path.

    An Ascend profile compiles kernels/ascend/ for its SoC instead and prints each kernel's HIVM IR (or device
    object, where the CANN toolkit's hivmc is on PATH)."""
    from ...kernels.ascend_build import ascend_soc
    from ...kernels.build import build
    from ...kernels.ort_headers import ort_include as headers
    from ...kernels.targets import resolve_target

    if ascend_soc(target) is not None:
        _build_ascend(target, cuda_arch, ort_include, jobs, force)
        return
    if ort_include is not None:
        headers(ort_include)  # checked before anything is said to be building
    resolved = resolve_target(target, cuda_arch)
    click.echo(f"building kernels for {resolved.describe()}", err=True)
    if resolved.note:
        click.echo(f"note: {resolved.note}", err=True)
    result = build(resolved, ort_include, jobs, force)
    click.echo(str(result.library))


def _build_ascend(target: str, cuda_arch: str | None, ort_include: str | None, jobs: int | None, force: bool) -> None:
    from ...kernels import ascend_build

    if cuda_arch or ort_include:
        raise click.UsageError("--cuda-arch and --ort-include do not apply to an Ascend profile's kernels")
    resolved = ascend_build.resolve(target)
    click.echo(f"building Ascend kernels for {resolved.describe()}: {', '.join(ascend_build.KERNELS)}", err=True)
    result = ascend_build.build(resolved, jobs, force)
    if not result.has_device_objects:
        click.echo(ascend_build.HIVMC_NOTE, err=True)
    for path in result.outputs():
        click.echo(str(path))


@kernels.command("list")
def list_cmd() -> None:
    """The ops with the devices they run on, then every build in the cache and whether it is current."""
    from ...kernels.library import cached_builds, current_build
    from ...kernels.schemas import SCHEMAS
    from ...toolkit.errors import QwdeployError

    print_rows(("op", "inputs", "attributes", "devices"),
               [(name, str(len(s.inputs)), ", ".join([*s.attributes, *(f"{a} (optional)" for a in s.optional_attributes)])
                 or "-", "cpu, cuda") for name, s in SCHEMAS.items()])
    try:
        current = {current_build("host").directory}
    except QwdeployError as exc:  # no compiler: nothing can be current, the cache may still hold builds
        click.echo(f"\nhost build state unknown: {exc}")
        current = set()
    rows = []
    for cached in cached_builds():
        target = cached.manifest["target"]
        cuda = ",".join(f"sm_{a}" for a in target["cuda_archs"]) or "-"
        is_current = cached.directory in current or _is_current(cached.directory, target)
        rows.append((target["name"], target["arch"], cuda, "current" if is_current else "stale",
                     str(cached.directory / cached.manifest["library"])))
    click.echo("")
    if rows:
        print_rows(("target", "arch", "cuda", "state", "library"), rows)
    else:
        click.echo("no kernels built yet: qwdeploy kernels build [--target host|PROFILE]")


def _is_current(directory, target: dict) -> bool:
    """Whether the current sources and compilers would build into this same folder."""
    from ...kernels.build import planned
    from ...kernels.targets import BuildTarget
    from ...toolkit.errors import QwdeployError

    try:
        return planned(BuildTarget(**target)).directory == directory
    except QwdeployError:
        return False
