"""Whether a build emits qwdeploy-domain ops, and the kernel library that travels with the artifact.

The library is built for the artifact's target (its profile, else this host) and copied into the
artifact folder, which records it by relative path: the folder runs wherever it is moved, and never
points into this machine's cache. The CPU backend builds it "portable" (one build per ISA, picked where
it loads), so a folder exported here runs on any CPU of this architecture. `-O custom_ops=auto` (the CPU
default) is decided here, once, and recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...kernels.build import LIBRARY, Build, build, planned
from ...kernels.ort_headers import ort_include
from ...kernels.schemas import DOMAIN
from ...kernels.targets import MACHINE_TARGETS, PORTABLE, BuildTarget, resolve_target
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
        """Whether the graph check may load the library here: a host or portable build runs on this CPU."""
        return self.build is not None and self.build.target.name in MACHINE_TARGETS


def kernel_target(profile: DeviceProfile | None, machine_target: str) -> BuildTarget:
    """What the kernels are built for. A backend whose machine target is "portable" (the CPU's) takes it for any
    profile of this machine's architecture too: the library then picks its ISA where it runs."""
    if profile is None:
        return resolve_target(machine_target)
    profiled = resolve_target(str(profile.source or profile.name))
    return resolve_target(PORTABLE) if machine_target == PORTABLE and not profiled.cross else profiled


def resolve(options: OrtOptions, profile: DeviceProfile | None, refusal: str | None,
            machine_target: str = "host") -> CustomOps:
    """`refusal`: why this device's graphs cannot take our ops (None when they can). `machine_target`: what the
    kernels are built for without a profile ("host" or "portable")."""
    requested = options.custom_ops
    if requested == "off":
        return CustomOps(requested, False, "-O custom_ops=off")
    if refusal is not None:
        if requested == "on":
            raise QwdeployError(f"-O custom_ops=on: {refusal}; leave custom_ops off")
        return CustomOps(requested, False, refusal)
    target = kernel_target(profile, machine_target)
    try:
        found = planned(target)
    except QwdeployError as exc:  # no compiler here: nothing can have been built for the current sources
        if requested == "on":
            raise
        return CustomOps(requested, False, f"no kernel library for {target.name} ({exc})")
    if requested == "on":
        return CustomOps(requested, True, f"-O custom_ops=on, built for {target.describe()}", found)
    if target.cross:  # nothing here can load what a cross build makes, so nothing here could check its graph
        return CustomOps(requested, False, f"kernels for {target.name} are cross-compiled and cannot be checked "
                                           "here; -O custom_ops=on builds them")
    if found.exists():
        return CustomOps(requested, True, f"kernel library for {target.describe()} found built", found)
    try:
        ort_include()  # fetched once into the cache when missing: the fast graph should not need a setup step
    except QwdeployError as exc:
        return CustomOps(requested, False, f"kernels for {target.name} not built and not buildable here ({exc}; "
                                           f"or run qwdeploy kernels build --target {target.name})")
    return CustomOps(requested, True, f"kernel library for {target.describe()} built here", found)
