from __future__ import annotations

from pathlib import Path

import click

from .table import print_rows

ARCHIVE_SUFFIX = ".tar.gz"
MAX_UNPACKED_BYTES = 256 * 2**30  # a bundle that claims more is refused before it fills the disk


@click.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--profile", "profile_name", required=True, help="Device profile (name or TOML) the bundle is for.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help=f"Bundle folder, or a {ARCHIVE_SUFFIX} file.")
@click.option("--context", type=click.IntRange(min=1), help="Tokens of KV cache the memory plan reserves "
              "[the artifact's context, at most 4096].")
@click.option("--allow-misfit", is_flag=True, help="Write the bundle even when it does not fit the profile.")
@click.option("--force", is_flag=True, help="Replace the output if it exists.")
def package(artifact: Path, profile_name: str, out: Path, context: int | None, allow_misfit: bool,
            force: bool) -> None:
    """Bundle a GGUF file or ONNX folder for a device: the model, a device README (and an ollama Modelfile
    for GGUF), and manifest.json with every file's sha256, the runtime it needs and the memory plan."""
    from ..atomic import scratch_directory
    from ..bundle.package import package as make
    from ..bundle.plan import describe
    from ..profiles import load_profile

    profile = load_profile(profile_name)
    if out.name.endswith(ARCHIVE_SUFFIX):
        from ..bundle.archive import pack

        with scratch_directory(out) as tmp:
            made = make(artifact, profile, tmp / "bundle", context, allow_misfit=allow_misfit)
            path = pack(made.path, out)
    else:
        made = make(artifact, profile, out, context, force=force, allow_misfit=allow_misfit)
        path = made.path
    manifest = made.manifest
    print_rows(None, [("wrote", str(path)), ("for", f"{profile.name} ({profile.description})"),
                      ("files", str(len(manifest.files))), ("checked", made.integrity),
                      ("fits" if manifest.memory.fits else "does NOT fit", describe(manifest.memory)),
                      ("runtime", f"{manifest.runtime.name} {manifest.runtime.requirement}")])


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--profile", "profile_name", help="Check the fit against this profile instead of the bundle's own.")
@click.option("--run", "rerun", is_flag=True, help="Also generate the greedy tokens recorded at packaging and compare.")
def verify(bundle: Path, profile_name: str | None, rerun: bool) -> None:
    """Check a bundle (folder or .tar.gz): manifest, every checksum, no extra or missing files, no links,
    the fit for its profile (or --profile), and the runtime this machine has."""
    from ..atomic import scratch_directory
    from ..bundle.verify import verify_bundle
    from ..profiles import load_profile

    profile = load_profile(profile_name) if profile_name else None
    if bundle.name.endswith(ARCHIVE_SUFFIX):
        from ..bundle.archive import open_bundle

        with scratch_directory(bundle) as tmp:
            rows = verify_bundle(open_bundle(bundle, tmp, MAX_UNPACKED_BYTES), profile, rerun)
    else:
        rows = verify_bundle(bundle, profile, rerun)
    print_rows(None, [("verified", str(bundle)), *rows])
