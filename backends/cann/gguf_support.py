"""Where llama.cpp's CANN backend runs a GGUF file's matmuls on each Ascend SoC, and which GGUF type keeps them
on the NPU.

Facts (read 2026-12): llama.cpp's docs/backend/CANN.md (https://github.com/ggml-org/llama.cpp/blob/master/docs/
backend/CANN.md: "2024.8 Support Q4_0 and Q8_0 data type for Ascend NPU", "2024.11 Support F16 and F32 data type
model for Ascend 310P NPU"; verified devices Atlas 300T A2 and Atlas 300I Duo; CANN >= 8.0.RC2) and
ggml/src/ggml-cann/ggml-cann.cpp's supports_op: MUL_MAT and MUL_MAT_ID take F16/F32 everywhere and Q4_0/Q8_0
except on the 310P (built with ASCEND_310P); every other type is left to the CPU backend. The 310B (Orange Pi AI
Pro class) is not a supported device. BF16, Q5_x, K-quants and I-quants are not on the lists: CPU. Some copies
of supports_op also accept Q4_1; the docs do not say so, so it stays on the CPU here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGMLQuantizationType as T

from ...exporters.gguf.quant import quant_type
from ...exporters.gguf.reader import GGUFFile
from ...toolkit.errors import QwdeployError
from ...toolkit.profiles import DeviceProfile
from .support import Placement

BACKEND = "llama.cpp's CANN backend"
# SoC family (the soc_version prefix) → weight types whose matmuls the backend runs on that NPU.
NPU_MATMUL_TYPES: dict[str, frozenset[T]] = {
    "910B": frozenset({T.F32, T.F16, T.Q8_0, T.Q4_0}),
    "310P": frozenset({T.F32, T.F16}),
}
UNSUPPORTED = {"310B": f"{BACKEND} does not support the Ascend 310B; llama.cpp runs the whole model on the CPU"}
# Per family, the GGUF types (qwdeploy's names) whose matmuls stay on the NPU, best first: 8-bit keeps quality
# where memory allows, 4-bit is the fallback a profile may list instead.
NPU_PREFERENCE = {"910B": ("q8_0", "q4_0", "f16"), "310P": ("f16",)}


@dataclass(frozen=True)
class TypeUse:
    """One tensor type of a GGUF file and where the matmuls over its tensors run."""

    qtype: str
    tensors: int
    matrices: int  # tensors of two or more dimensions: the weights matmuls read
    placement: Placement
    reason: str


@dataclass(frozen=True)
class GgufChoice:
    quant: str  # qwdeploy's GGUF type name (exporters/gguf/quant.py)
    placement: Placement
    reason: str


def soc_family(profile: DeviceProfile) -> str:
    """"910B", "310P", "310B" (or another family, which nothing here knows) from the profile's ATC soc_version."""
    soc = profile.accelerator.soc_version
    if profile.accelerator.kind != "ascend" or not soc.startswith("Ascend"):
        raise QwdeployError(f"profile '{profile.name}' names no Ascend SoC ([accelerator] soc_version)")
    return soc.removeprefix("Ascend")[:4]


def matmul_placement(family: str, qtype: T) -> tuple[Placement, str]:
    """Where llama.cpp runs MUL_MAT/MUL_MAT_ID over weights of `qtype` on one SoC family, and why."""
    if family in UNSUPPORTED:
        return Placement.CPU, UNSUPPORTED[family]
    if family not in NPU_MATMUL_TYPES:
        return Placement.UNVERIFIED, f"no llama.cpp CANN facts for Ascend {family} (known: 910B, 310P, 310B)"
    if qtype in NPU_MATMUL_TYPES[family]:
        return Placement.NPU, f"{BACKEND} runs {qtype.name} matmuls on the {family}"
    on_npu = "/".join(t.name for t in sorted(NPU_MATMUL_TYPES[family]))
    return Placement.CPU, f"{BACKEND} runs {on_npu} matmuls on the {family}; {qtype.name} falls back to the CPU"


def type_uses(gguf: GGUFFile, profile: DeviceProfile) -> list[TypeUse]:
    """Per tensor type in the file, most tensors first: how many tensors, and where their matmuls run."""
    family = soc_family(profile)
    counts: dict[T, list[int]] = {}
    for tensor in gguf.tensors.values():
        entry = counts.setdefault(tensor.qtype, [0, 0])
        entry[0] += 1
        entry[1] += len(tensor.shape) >= 2
    uses = []
    for qtype, (tensors, matrices) in sorted(counts.items(), key=lambda kv: -kv[1][0]):
        placement, reason = matmul_placement(family, qtype)
        if not matrices and family in NPU_MATMUL_TYPES:  # norms and biases feed elementwise ops, on the NPU
            placement, reason = Placement.NPU, "1-D tensors (norms, biases) only: no matmul reads them"
        uses.append(TypeUse(qtype.name, tensors, matrices, placement, reason))
    return uses


def npu_gguf_type(profile: DeviceProfile) -> GgufChoice:
    """The GGUF type for an Ascend profile whose matmuls run on its NPU, with a one-line reason."""
    family = soc_family(profile)
    if family not in NPU_PREFERENCE:
        placement, reason = matmul_placement(family, quant_type(profile.deploy.gguf_quant).tensor_type)
        return GgufChoice(profile.deploy.gguf_quant, placement, f"{reason}, so the profile's gguf_quant stands")
    for quant in NPU_PREFERENCE[family]:
        if quant in profile.deploy.dtypes:
            return GgufChoice(quant, Placement.NPU, matmul_placement(family, quant_type(quant).tensor_type)[1])
    return GgufChoice(profile.deploy.gguf_quant, Placement.CPU, f"the profile's dtypes list none of "
                      f"{', '.join(NPU_PREFERENCE[family])}, the types whose matmuls run on the {family}'s NPU")


def quant_note(profile: DeviceProfile, quant: str) -> str:
    """One line for an export's summary: where a file of this type runs its bulk matmuls on the profile's SoC."""
    placement, reason = matmul_placement(soc_family(profile), quant_type(quant).tensor_type)
    if placement is Placement.NPU:
        return reason
    best = npu_gguf_type(profile)
    hint = f" (--quant {best.quant} keeps them on the NPU)" if best.placement is Placement.NPU else ""
    return reason + hint
