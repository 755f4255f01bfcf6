"""Whether a build emits qwdeploy-domain ops, and the kernel library that travels with the artifact.

The library is built for the artifact's target (its profile, else this host) and copied into the
artifact folder, which records it by relative path: the folder runs wherever it is moved, and never
points into this machine's cache. `-O custom_ops=auto` is decided here, once, and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...kernels.build import LIBRARY, Build, build, planned
from ...kernels.schemas import DOMAIN
from ...kernels.targets import resolve_target
from ...toolkit.errors import QwdeployError
from ...toolkit.profiles import DeviceProfile
from .options import OrtOptions


@dataclass(frozen=True)
class CustomOps:
    requested: str  # -O custom_ops as given: on, off, auto
    emit: bool
    why: str  # how the request was decided, for the manifest and the summary
    build: Build | None = None  # where the target's library is (or will be) built, when emitting

    def built(self) -> Build:
        """The target's build, compiled now if the cache does not hold it yet (minutes, once)."""
        return self.build if self.build.exists() else build(self.build.target)

    def record(self) -> dict:
        """The manifest's custom_ops object; the library by its name inside the artifact folder."""
        return {"requested": self.requested, "emitted": self.emit, "why": self.why, "domain": DOMAIN,
                "library": LIBRARY if self.build else None,
                "target": self.build.target.describe() if self.build else None}

    def loads_here(self) -> bool:
        """Whether the graph check may load the library here: only a host build is sure to run on this CPU."""
        return self.build is not None and self.build.target.name == "host"


def resolve(options: OrtOptions, profile: DeviceProfile | None, refusal: str | None) -> CustomOps:
    """`refusal`: why this device's graphs cannot take our ops (None when they can)."""
    requested = options.custom_ops
    if requested == "off":
        return CustomOps(requested, False, "-O custom_ops=off")
    if refusal is not None:
        if requested == "on":
            raise QwdeployError(f"-O custom_ops=on: {refusal}; leave custom_ops off")
        return CustomOps(requested, False, refusal)
    target = resolve_target("host" if profile is None else str(profile.source or profile.name))
    try:
        found = planned(target)
    except QwdeployError as exc:  # no compiler here: nothing can have been built for the current sources
        if requested == "on":
            raise
        return CustomOps(requested, False, f"no kernel library for {target.name} ({exc})")
    if requested == "on":
        return CustomOps(requested, True, f"-O custom_ops=on, built for {target.describe()}", found)
    if not found.exists():
        return CustomOps(requested, False, f"no kernel library built for {target.name} "
                                           f"(qwdeploy kernels build --target {target.name})")
    return CustomOps(requested, True, f"kernel library for {target.describe()} found built", found)
