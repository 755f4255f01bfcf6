"""The backend contract: what every device backend (cpu, cuda, cann, ...) provides.

Invariants every backend keeps (tests/backends/test_contract.py checks them for all of them):
  - Importing a backend module never fails and never touches a device or an optional package;
    `availability()` returns (False, reason) instead of raising when the machine cannot run it.
  - `pipeline(plan)` is a pure description: named phases, each an ordered list of passes
    (callables with a `name`), the same for the same plan. Building runs exactly these.
  - `build` reads the portable graph folder, never modifies it, and writes `out` whole or not at
    all; it raises QwdeployError (one line) for anything the user can fix.
  - Options are a frozen dataclass whose `option()` fields are the `-O KEY=VALUE` settings; an
    unknown key is an error, not ignored.
The runtimes that run a device's artifacts are listed beside its backend in toolkit/devices.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from ..toolkit.errors import QwdeployError
from ..toolkit.profiles import DTYPE_ALIASES, DeviceProfile
from ..toolkit.spec import ModelSpec
from ..toolkit.tensors import expected_tensors
from .passes import Phase, PassReport

OPTION = "qwdeploy.option"  # dataclass field metadata key


@dataclass(frozen=True)
class Option:
    parse: Callable[[str], Any]  # from the CLI's KEY=VALUE text
    help: str
    quants: tuple[str, ...] = ()  # the --quant values it applies to; empty: all


def option(default: Any, parse: Callable[[str], Any], help: str, quants: tuple[str, ...] = ()) -> Any:
    """A backend options field that `-O NAME=VALUE` sets."""
    return field(default=default, metadata={OPTION: Option(parse, help, quants)})


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return text
    return parse


def option_fields(options: Any) -> dict[str, tuple[Option, Any]]:
    """name → (the option, its value in `options`), in declaration order."""
    return {f.name: (f.metadata[OPTION], getattr(options, f.name)) for f in fields(options) if OPTION in f.metadata}


O = TypeVar("O")


@dataclass(frozen=True)
class Plan(Generic[O]):
    """What one build is for: the pipeline and the passes are chosen from this alone."""

    quant: str
    options: O
    spec: ModelSpec
    profile: DeviceProfile | None = None


@dataclass(frozen=True)
class BuildRequest(Generic[O]):
    portable: Path  # folder with the portable graph (model.onnx + .data, tokenizer, genai_config.json)
    out: Path
    plan: Plan[O]
    force: bool = False
    inputs: tuple[Path, ...] = ()  # what the output must never overlap


@dataclass
class BuildResult:
    path: Path
    reports: list[tuple[str, PassReport]]  # (phase, report) per pass, in pipeline order
    summary: list[tuple[str, str]] = field(default_factory=list)


# Bytes a weight takes in a graph of each --quant type, block scales included (blocks of 32, f32 scales).
WEIGHT_BYTES = {"f32": 4.0, "bf16": 2.0, "f16": 2.0, "int8": 1.125, "int4": 0.625}


class Backend(ABC, Generic[O]):
    name: str
    description: str
    quants: tuple[str, ...]  # accepted --quant values, the first is the default without a profile
    portable: str  # the portable graph's precision (exporter --quant) the pipeline starts from
    defaults: O  # this device's option values before -O
    verify_provider: str  # the ONNX Runtime execution provider `export --verify` runs the artifact on
    quantizes_embedding: bool = False  # integer builds gather from the quantized table instead of a float one

    @abstractmethod
    def availability(self) -> tuple[bool, str]:
        """(True, what runs it) or (False, why not); never raises."""

    @abstractmethod
    def pipeline(self, plan: Plan[O]) -> list[Phase]:
        """Named phases of passes, in order."""

    @abstractmethod
    def build(self, request: BuildRequest[O]) -> BuildResult:
        """Run the pipeline over request.portable and write the artifact folder request.out."""

    def estimate(self, spec: ModelSpec, quant: str) -> tuple[int, int]:
        """(weight bytes, KV-cache bytes per token) of this device's graph for `quant`, from the spec alone:
        what `export --profile` sizes candidates with before any weight is read."""
        floats = WEIGHT_BYTES[self.portable]
        weights = 0.0
        for tensor in expected_tensors(spec):
            if len(tensor.shape) == 1:
                weights += tensor.numel * floats
            elif tensor.role == "token_embd" and quant in ("int4", "int8") and not self.quantizes_embedding:
                weights += tensor.numel * (floats + (WEIGHT_BYTES[quant] if spec.tie_word_embeddings else 0))
            else:
                weights += tensor.numel * WEIGHT_BYTES[quant]
        kv_per_token = spec.num_layers * spec.num_kv_heads * spec.head_dim * 2 * floats  # K and V
        return int(weights), int(kv_per_token)

    def check_profile(self, profile: DeviceProfile | None) -> None:
        """Refuse a profile this device cannot build for (one line), before any work is done."""

    def resolve_quant(self, quant: str | None, profile: DeviceProfile | None) -> str:
        name = quant if quant is not None else (profile.deploy.onnx_quant if profile is not None else self.quants[0])
        name = DTYPE_ALIASES.get(name.lower(), name.lower())
        if name not in self.quants:
            raise QwdeployError(f"--target {self.name} --quant {quant}: use one of {', '.join(self.quants)}")
        return name

    def resolve_options(self, raw: dict[str, Any], quant: str | None = None) -> O:
        """This device's defaults with `raw` applied (strings are parsed); unknown keys refused, and
        (given `quant`) keys that do nothing for that quant type."""
        table = option_fields(self.defaults)
        unknown = sorted(set(raw) - set(table))
        if unknown:
            raise QwdeployError(f"--target {self.name}: unknown option '{unknown[0]}'; known: {', '.join(table)}")
        idle = [key for key in raw if quant and table[key][0].quants and quant not in table[key][0].quants]
        if idle:
            raise QwdeployError(f"-O {idle[0]} applies to --quant {'/'.join(table[idle[0]][0].quants)}; "
                                f"--quant {quant} has no weights it would change")
        parsed = {}
        for key, value in raw.items():
            try:
                parsed[key] = table[key][0].parse(value) if isinstance(value, str) else value
            except ValueError as exc:
                raise QwdeployError(f"--target {self.name}: option {key}={value!r}: {exc}") from None
        return replace(self.defaults, **parsed)
