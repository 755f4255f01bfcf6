"""What `export --profile` writes when no type is named: the first of the profile's preferences that fits.

Each candidate is sized from the ModelSpec before any weight is read (the GGUF plan's exact tensor
bytes, llama.cpp's rules for K-quants, the device backend's graph layout for ONNX), planned with the
KV cache and runtime overhead `package` uses, and held to the profile's memory budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bundle.manifest import MemoryPlan
from .bundle.plan import describe, plan_for
from .errors import QwdeployError
from .profiles import DeviceProfile
from .spec import ModelSpec

FORMATS = ("gguf", "onnx")


@dataclass(frozen=True)
class Candidate:
    format: str
    quant: str

    def __str__(self) -> str:
        return f"{self.format} {self.quant}"


@dataclass(frozen=True)
class Sized:
    candidate: Candidate
    plan: MemoryPlan | None  # None when the device's backend does not build this type
    refused: str = ""

    @property
    def fits(self) -> bool:
        return self.plan is not None and self.plan.fits


@dataclass(frozen=True)
class Choice:
    chosen: Candidate
    sized: tuple[Sized, ...]  # every candidate looked at, in the profile's order

    def reasons(self) -> list[tuple[str, str]]:
        """(candidate, verdict) rows for the terminal: why each one before the choice was passed over."""
        rows = []
        for item in self.sized:
            verdict = item.refused or f"{'fits' if item.fits else 'does not fit'}: {describe(item.plan)}"
            rows.append((str(item.candidate) + (" (chosen)" if item.candidate == self.chosen else ""), verdict))
            if item.candidate == self.chosen:
                break
        return rows


def candidates(profile: DeviceProfile, fmt: str | None = None) -> list[Candidate]:
    """The profile's preferences, best first, narrowed to `fmt` when one is given."""
    listed = [Candidate(*entry.split(":")) for entry in profile.deploy.prefer]
    listed = listed or [Candidate(profile.deploy.format, _default_quant(profile, profile.deploy.format))]
    if fmt is None:
        return listed
    return [c for c in listed if c.format == fmt] or [Candidate(fmt, _default_quant(profile, fmt))]


def _default_quant(profile: DeviceProfile, fmt: str) -> str:
    return profile.deploy.gguf_quant if fmt == "gguf" else profile.deploy.onnx_quant


def size(spec: ModelSpec, candidate: Candidate, profile: DeviceProfile) -> Sized:
    if candidate.format == "gguf":
        from ..exporters.gguf.plan import estimate_bytes
        from ..exporters.gguf.quant import quant_type
        from .tensors import expected_tensors

        quant = quant_type(candidate.quant)
        weights = estimate_bytes(expected_tensors(spec), quant.tensor_type, quant.by_llama, spec.num_layers)
        kv_per_token = spec.num_layers * spec.num_kv_heads * spec.head_dim * 2 * 2  # llama.cpp's f16 K and V
    else:
        from ..backends import BACKENDS

        backend = BACKENDS.get(profile.deploy.backend)
        if candidate.quant not in backend.quants:
            return Sized(candidate, None, f"the {backend.name} backend builds {', '.join(backend.quants)} only")
        weights, kv_per_token = backend.estimate(spec, candidate.quant)
    return Sized(candidate, plan_for(weights, kv_per_token, spec.max_position_embeddings, profile))


def choose(spec: ModelSpec, profile: DeviceProfile, fmt: str | None = None) -> Choice:
    """The first candidate whose estimated memory plan fits; an error with every candidate's numbers if none does."""
    sized = []
    for candidate in candidates(profile, fmt):
        sized.append(size(spec, candidate, profile))
        if sized[-1].fits:
            return Choice(candidate, tuple(sized))
    planned = [s for s in sized if s.plan is not None]
    smallest = min(planned, key=lambda s: s.plan.total) if planned else None
    detail = f"the smallest, {smallest.candidate}, needs {describe(smallest.plan)}" if smallest else sized[0].refused
    raise QwdeployError(f"nothing {profile.name} prefers fits: {detail}; name a --quant (and --format) to export "
                        "anyway, or use a profile with more memory")
