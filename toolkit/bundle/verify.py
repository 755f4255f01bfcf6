"""`qwdeploy verify`: a bundle is exactly what its manifest lists, unchanged, and fits its device."""

from __future__ import annotations

import os
import stat
from importlib import metadata
from pathlib import Path

from ..checksums import file_sha256
from ..errors import ArtifactError
from ..profiles import DeviceProfile
from ..runtimes.generate import why_not_here
from .manifest import MANIFEST, BundleManifest
from .plan import describe, memory_plan


def _present(folder: Path) -> set[str]:
    """Every regular file under `folder`, relative; links and special files are refused, not followed."""
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ArtifactError(f"{path.relative_to(folder)} is a link or special file; a bundle holds files only",
                                    folder)
            if stat.S_ISREG(mode):
                found.add(path.relative_to(folder).as_posix())
    return found


def _runtime_line(manifest: BundleManifest) -> str:
    from packaging.specifiers import SpecifierSet

    runtime = manifest.runtime
    try:
        version = metadata.version(runtime.name)
    except metadata.PackageNotFoundError:
        return f"{runtime.name} {runtime.requirement} needed; not installed here"
    if version not in SpecifierSet(runtime.requirement):
        raise ArtifactError(f"needs {runtime.name} {runtime.requirement}; this machine has {version}")
    return f"{runtime.name} {version} ({runtime.requirement})"


def _rerun(folder: Path, manifest: BundleManifest) -> str:
    from .package import reference_tokens

    foreign = why_not_here(folder / manifest.model, manifest.artifact_kind)
    if foreign:
        raise ArtifactError(f"--run cannot run this bundle here: {foreign}; verify --run on the device", folder)
    if manifest.reference is None:
        return "skipped: no tokens were recorded at packaging (the model did not run there)"
    recorded = manifest.reference.tokens
    ours = reference_tokens(folder / manifest.model, manifest.artifact_kind, manifest.reference.prompt)
    if ours != recorded:
        at = next(i for i, (a, b) in enumerate(zip(ours + [-1], recorded + [-1])) if a != b)
        raise ArtifactError(f"greedy tokens differ from those recorded at packaging from position {at} "
                            f"({ours[at:at + 4]} here, {recorded[at:at + 4]} recorded)", folder)
    return f"{len(ours)} greedy tokens, the same as recorded at packaging"


def verify_bundle(folder: Path, profile: DeviceProfile | None = None, run: bool = False) -> list[tuple[str, str]]:
    """(check, result) rows; ArtifactError naming the first file or number that is wrong."""
    folder = Path(folder)
    manifest = BundleManifest.read(folder)
    listed = {entry.path: entry for entry in manifest.files}
    present = _present(folder) - {MANIFEST}
    extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
    if extra:
        raise ArtifactError(f"{extra[0]} is not in {MANIFEST}: something was added", folder)
    if missing:
        raise ArtifactError(f"{missing[0]} is listed in {MANIFEST} but missing", folder)
    for entry in manifest.files:
        path = folder / entry.path
        if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
            raise ArtifactError(f"{entry.path} does not match its size and sha256 in {MANIFEST}: it changed", folder)
    plan = manifest.memory
    if profile is not None:
        plan = memory_plan(folder / manifest.model, manifest.artifact_kind, profile, manifest.memory.context)
    if not plan.fits:
        raise ArtifactError(f"does not fit {plan.budget_source}: {describe(plan)}", folder)
    rows = [("files", f"{len(listed)} files, sizes and sha256 as listed, nothing extra"),
            ("fits", describe(plan)),
            ("runtime", _runtime_line(manifest)),
            ("runs here", f"no: {foreign}" if (foreign := why_not_here(folder / manifest.model,
                                                                     manifest.artifact_kind)) else "yes"),
            ("made for", f"{manifest.profile} by qwdeploy {manifest.toolkit_version}")]
    return rows + ([("run", _rerun(folder, manifest))] if run else [])
