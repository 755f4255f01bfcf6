"""The backend contract: what every device backend (cpu, cuda, cann, ...) provides.

Invariants every backend keeps (tests/backends/test_contract.py checks them for all of them):
  - Importing a backend module never fails and never touches a device or an optional package;
    `availability()` returns (False, reason) instead of raising when the machine cannot run it.
  - `pipeline(profile, options)` is a pure description: named phases, each an ordered list of
    passes (callables with a `name`), the same for the same arguments. Building runs exactly these.
  - `build` reads the portable graph folder, never modifies it, and writes `out` whole or not at
    all; it raises QwdeployError (one line) for anything the user can fix.
  - Options are validated against `OPTIONS`; an unknown key is an error, not ignored.
  - `collector()` imports `qwdeploy.backends.<name>.collector` only when called and returns its
    COLLECTOR (the profiler's view of this backend).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..toolkit.errors import QwdeployError
from ..toolkit.profiles import DeviceProfile
from ..toolkit.spec import ModelSpec
from .passes import Phase, PassReport


@dataclass(frozen=True)
class Option:
    parse: Callable[[str], Any]  # from the CLI's KEY=VALUE text
    default: Any
    help: str
    quants: tuple[str, ...] = ()  # the --quant values it applies to; empty: all


@dataclass(frozen=True)
class BuildRequest:
    portable: Path  # folder with the portable graph (model.onnx + .data, tokenizer, genai_config.json)
    out: Path
    spec: ModelSpec
    quant: str
    options: dict[str, Any]  # already resolved by `resolve_options`
    profile: DeviceProfile | None = None
    force: bool = False
    inputs: tuple[Path, ...] = ()  # what the output must never overlap


@dataclass
class BuildResult:
    path: Path
    reports: list[tuple[str, PassReport]]  # (phase, report) per pass, in pipeline order
    summary: list[tuple[str, str]] = field(default_factory=list)


class Backend(ABC):
    name: str
    description: str
    quants: tuple[str, ...]  # accepted --quant values, the first is the default without a profile
    OPTIONS: dict[str, Option] = {}

    @abstractmethod
    def availability(self) -> tuple[bool, str]:
        """(True, what runs it) or (False, why not); never raises."""

    @abstractmethod
    def portable_precision(self, quant: str) -> str:
        """The portable graph precision (exporter --quant) the pipeline starts from."""

    @abstractmethod
    def pipeline(self, profile: DeviceProfile | None, options: dict[str, Any]) -> list[Phase]:
        """Named phases of passes, in order."""

    @abstractmethod
    def build(self, request: BuildRequest) -> BuildResult:
        """Run the pipeline over request.portable and write the artifact folder request.out."""

    def resolve_quant(self, quant: str | None, profile: DeviceProfile | None) -> str:
        name = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16"}.get(quant or "", quant)
        if name is None:
            name = profile.deploy.onnx_quant if profile is not None else self.quants[0]
            name = {"f32": "fp32", "f16": "fp16"}.get(name, name)
        if name not in self.quants:
            raise QwdeployError(f"--target {self.name} --quant {quant}: use one of {', '.join(self.quants)}")
        return name

    def resolve_options(self, raw: dict[str, Any], quant: str | None = None) -> dict[str, Any]:
        """Defaults for every option, overridden by `raw` (strings are parsed); unknown keys refused, and
        (given `quant`) keys that do nothing for that quant type."""
        unknown = sorted(set(raw) - set(self.OPTIONS))
        if unknown:
            raise QwdeployError(f"--target {self.name}: unknown option '{unknown[0]}'; known: "
                                f"{', '.join(self.OPTIONS)}")
        idle = [key for key in raw if quant and self.OPTIONS[key].quants and quant not in self.OPTIONS[key].quants]
        if idle:
            option = self.OPTIONS[idle[0]]
            raise QwdeployError(f"-O {idle[0]} applies to --quant {'/'.join(option.quants)}; "
                                f"--quant {quant} has no weights it would change")
        resolved = {}
        for key, option in self.OPTIONS.items():
            value = raw.get(key, option.default)
            try:
                resolved[key] = option.parse(value) if isinstance(value, str) else value
            except ValueError as exc:
                raise QwdeployError(f"--target {self.name}: option {key}={value!r}: {exc}") from None
        return resolved

    def collector(self) -> Any:
        return importlib.import_module(f"qwdeploy.backends.{self.name}.collector").COLLECTOR
