"""What a kernel build is for: the machine it runs on ("host") or a device profile's CPU and GPU."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

from ..toolkit.errors import QwdeployError

HERE = Path(__file__).resolve().parent
TOOLCHAINS = {"aarch64": HERE / "cmake" / "aarch64-linux-gnu.cmake"}
CROSS_COMPILERS = {"aarch64": ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")}  # (executable, Debian package)

# Profile ISA names → compiler flags; the kernels pick AVX-512, AVX2+FMA or NEON at compile time from these.
X86_FLAGS = {"sse4_2": "-msse4.2", "avx2": "-mavx2", "fma": "-mfma", "avx512f": "-mavx512f", "avx512bw": "-mavx512bw",
             "avx512_vnni": "-mavx512vnni", "avx512_bf16": "-mavx512bf16"}
ARM_EXTENSIONS = {"fp16": "+fp16", "dotprod": "+dotprod", "i8mm": "+i8mm", "bf16": "+bf16", "sve": "+sve",
                  "sve2": "+sve2"}
PORTABLE = "portable"
MACHINE_TARGETS = ("host", PORTABLE)  # targets named by what they run on, not by a device profile
# A portable build's ISA variants per architecture, best first: (name, compiler flags). kernels/ort/dispatch.cc
# holds the same names with the run-time check for each, and loads the first this CPU passes.
PORTABLE_VARIANTS = {
    "x86_64": (("avx512_vnni", ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx2",
                                "-mfma", "-mf16c")),
               ("avx_vnni", ("-mavx2", "-mfma", "-mf16c", "-mavxvnni")),
               ("avx2", ("-mavx2", "-mfma", "-mf16c")),
               ("baseline", ())),
    "aarch64": (("dotprod", ("-march=armv8.2-a+dotprod",)), ("baseline", ("-march=armv8-a",))),
}


@dataclass(frozen=True)
class BuildTarget:
    """What one kernel build is for: the CPU (and GPUs) of this host or of a device profile."""

    name: str  # "host" or the profile's name
    arch: str  # x86_64 | aarch64
    cpu_flags: tuple[str, ...]
    cuda_archs: tuple[str, ...] = ()  # CMake form: ("87", "90")
    note: str = ""  # what was left out, and why
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()  # portable: one build per ISA, picked at load time

    @property
    def cross(self) -> bool:
        return self.arch != host_arch()

    @property
    def compiler(self) -> str:
        return CROSS_COMPILERS[self.arch][0] if self.cross else "g++"

    @property
    def toolchain(self) -> Path | None:
        return TOOLCHAINS[self.arch] if self.cross else None

    def describe(self) -> str:
        if self.variants:
            return f"{self.name} ({self.arch}, {' | '.join(name for name, _ in self.variants)}, picked at load time)"
        cuda = f", CUDA sm_{',sm_'.join(self.cuda_archs)}" if self.cuda_archs else ""
        return f"{self.name} ({self.arch}, {' '.join(self.cpu_flags) or 'baseline ISA'}{cuda})"


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def parse_cuda_archs(text: str) -> tuple[str, ...]:
    """"sm_87,sm_90" (or "87;90") → ("87", "90")."""
    archs = []
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        match = re.fullmatch(r"(?:sm_|compute_)?(\d{2,3}[af]?)", part)
        if not match:
            raise QwdeployError(f"bad CUDA architecture '{part}'; expected e.g. sm_87,sm_90")
        archs.append(match.group(1))
    return tuple(dict.fromkeys(archs))


def _profile_flags(arch: str, isa: list[str]) -> tuple[str, ...]:
    if arch == "x86_64":
        # F16C (fp16 scale conversion) came before AVX2 on every x86 line: an AVX2 profile has it.
        return tuple(X86_FLAGS[i] for i in isa if i in X86_FLAGS) + (("-mf16c",) if "avx2" in isa else ())
    extensions = "".join(ARM_EXTENSIONS[i] for i in isa if i in ARM_EXTENSIONS)
    return (f"-march=armv8.2-a{extensions}",) if extensions else ("-march=armv8-a",)


def resolve_target(target: str = "host", cuda_arch: str | None = None) -> BuildTarget:
    """"host" builds for this machine (-march=native); "portable" for any CPU of this machine's architecture
    (one build per ISA variant); a profile name or .toml path for that device's ISA, cross-compiling when its
    CPU differs. cuda_arch overrides the profile's accelerator.cuda_arch."""
    cuda = parse_cuda_archs(cuda_arch) if cuda_arch else ()
    if target == "host":
        return BuildTarget("host", host_arch(), ("-march=native",), cuda)
    if target == PORTABLE:
        if cuda:
            raise QwdeployError("a portable build has no CUDA kernels; build them with --target host --cuda-arch")
        return BuildTarget(PORTABLE, host_arch(), (), variants=PORTABLE_VARIANTS.get(host_arch(), (("baseline", ()),)))

    from ..toolkit.profiles import load_profile

    profile = load_profile(target)
    arch = profile.cpu.arch
    if arch != host_arch() and arch not in TOOLCHAINS:
        raise QwdeployError(f"cannot cross-compile for {arch} from {host_arch()}; known cross targets: "
                            f"{', '.join(TOOLCHAINS)}")
    if not cuda and profile.accelerator.kind == "cuda":
        cuda = parse_cuda_archs(profile.accelerator.cuda_arch)
    note = ""
    if cuda and arch != host_arch():
        if cuda_arch:
            raise QwdeployError(f"CUDA kernels for {arch} need that architecture's CUDA libraries; build them on "
                                f"the device (qwdeploy kernels build --target host --cuda-arch {cuda_arch})")
        note = f"CUDA kernels left out: build them on the {arch} device itself"
        cuda = ()
    return BuildTarget(profile.name, arch, _profile_flags(arch, profile.cpu.isa), cuda, note)
