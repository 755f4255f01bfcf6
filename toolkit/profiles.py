"""Device profiles: TOML data describing a target, loaded strictly (unknown keys are errors).

The dataclasses below *are* the schema: a section per dataclass, a key per field, its annotation
the type the TOML value must have, CHOICES the allowed values where the set is closed.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from .devices import DEVICES
from .errors import ProfileError
from .files import brief, read_toml

ONNX_QUANTS = ("f32", "f16", "int8", "int4")
DTYPES = ("f32", "f16", "bf16", "int8", "int4", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k")
# Other spellings users type for those names.
DTYPE_ALIASES = {"float32": "f32", "fp32": "f32", "float16": "f16", "fp16": "f16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Memory:
    total_gib: float
    budget_gib: float  # what weights + KV cache may use on the device that runs the model


@dataclass(frozen=True)
class CPU:
    arch: str
    cores: int
    isa: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Accelerator:
    kind: str = "none"
    name: str = ""
    memory_gib: float = 0.0
    cuda_arch: str = ""  # e.g. sm_87
    compute_capability: str = ""  # e.g. 8.7
    soc_version: str = ""  # ATC --soc_version, e.g. Ascend310P3
    cann_version: str = ""


@dataclass(frozen=True)
class Deploy:
    format: str
    backend: str
    dtypes: list[str]
    gguf_quant: str
    onnx_quant: str
    onnx_opset: int = 17
    usd_per_hour: float = 0.0
    # "format:type" entries, best first: what `export --profile` picks from when no type is given, taking the
    # first whose memory plan fits the budget. Empty: the format above with its type.
    prefer: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    memory: Memory
    cpu: CPU
    accelerator: Accelerator
    deploy: Deploy
    source: Path | None = None


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("cpu", "arch"): ("x86_64", "aarch64"),
    ("cpu", "isa"): ("sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx",
                     "neon", "fp16", "dotprod", "i8mm", "sve", "sve2", "bf16"),
    ("accelerator", "kind"): ("none", "cuda", "ascend"),
    ("deploy", "format"): ("onnx", "gguf"),
    ("deploy", "backend"): tuple(DEVICES),
    ("deploy", "dtypes"): DTYPES,
    ("deploy", "gguf_quant"): DTYPES,
    ("deploy", "onnx_quant"): ONNX_QUANTS,
    ("deploy", "prefer"): (*(f"gguf:{d}" for d in DTYPES if d not in ("int8", "int4")),
                           *(f"onnx:{d}" for d in ONNX_QUANTS)),
}

# Inclusive bounds of numeric keys. Tools size buffers from, divide by and bill with these values,
# so zero, negative and absurd ones are refused on load, as is NaN/inf in any float.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("memory", "total_gib"): (1e-3, 1e6),
    ("memory", "budget_gib"): (1e-3, 1e6),
    ("cpu", "cores"): (1, 65536),
    ("accelerator", "memory_gib"): (0.0, 1e6),
    ("deploy", "onnx_opset"): (11, 30),
    ("deploy", "usd_per_hour"): (0.0, 1e6),
}
MAX_PROFILE_BYTES = 1024 * 1024

SECTIONS = {"memory": Memory, "cpu": CPU, "accelerator": Accelerator, "deploy": Deploy}
TOP_LEVEL = {"description": str}


def _check_value(where: str, key: str, value: Any, kind: Any, source: Path) -> None:
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == list[str]:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        type_name = "a list of strings" if kind == list[str] else f"a {kind.__name__}"
        raise ProfileError(f"[{where}] '{key}' must be {type_name}, got {brief(value)}", source)
    _check_range(where, key, value, source)
    allowed = CHOICES.get((where, key))
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if allowed and v not in allowed]
    if bad:
        raise ProfileError(f"[{where}] '{key}' has unknown value {brief(bad[0])}; allowed: {', '.join(allowed)}",
                           source)


def _check_range(where: str, key: str, value: Any, source: Path) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ProfileError(f"[{where}] '{key}' must be a finite number, got {value}", source)
    low, high = RANGES.get((where, key), (-math.inf, math.inf))
    if isinstance(value, (int, float)) and not low <= value <= high:
        raise ProfileError(f"[{where}] '{key}' must be from {low:g} to {high:g}, got {value}", source)


def _section(name: str, cls: type, data: Any, source: Path) -> Any:
    if not isinstance(data, dict):
        raise ProfileError(f"[{name}] must be a table", source)
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ProfileError(f"[{name}] has unknown key {brief(key)}; known: {', '.join(known)}", source)
        _check_value(name, key, value, hints[key], source)
    for key, f in known.items():
        if key not in data and f.default is MISSING and f.default_factory is MISSING:
            raise ProfileError(f"[{name}] is missing required key '{key}'", source)
    return cls(**{k: float(v) if hints[k] is float else v for k, v in data.items()})


def parse_profile(data: dict, name: str, source: Path) -> DeviceProfile:
    for key in data:
        if key not in SECTIONS and key not in TOP_LEVEL:
            raise ProfileError(f"unknown key {brief(key)}; known: {', '.join([*TOP_LEVEL, *SECTIONS])}", source)
    description = data.get("description", "")
    _check_value("profile", "description", description, str, source)
    sections = {key: _section(key, cls, data.get(key, {}), source) for key, cls in SECTIONS.items()}
    profile = DeviceProfile(name=name, description=description, source=source, **sections)
    _check_consistency(profile, source)
    return profile


def _check_consistency(p: DeviceProfile, source: Path) -> None:
    if p.memory.budget_gib > p.memory.total_gib and p.accelerator.memory_gib == 0:
        raise ProfileError("[memory] 'budget_gib' exceeds 'total_gib'", source)
    if p.deploy.gguf_quant not in p.deploy.dtypes:
        raise ProfileError(f"[deploy] 'gguf_quant' {p.deploy.gguf_quant!r} is not in 'dtypes'", source)
    unlisted = [entry for entry in p.deploy.prefer if entry.partition(":")[2] not in p.deploy.dtypes]
    if unlisted:
        raise ProfileError(f"[deploy] 'prefer' entry {unlisted[0]!r} is not in 'dtypes'", source)
    needs = {"cuda": ("cuda_arch", "compute_capability"), "ascend": ("soc_version", "cann_version")}
    for key in needs.get(p.accelerator.kind, ()):
        if not getattr(p.accelerator, key):
            raise ProfileError(f"[accelerator] kind '{p.accelerator.kind}' needs '{key}'", source)
    needed = DEVICES[p.deploy.backend].accelerator
    if needed != "none" and p.accelerator.kind != needed:
        raise ProfileError(f"[deploy] backend '{p.deploy.backend}' needs a '{needed}' accelerator", source)


def _builtin_dir() -> Path:
    return Path(str(resources.files("qwdeploy.profiles")))


def profile_names() -> list[str]:
    return sorted(p.stem for p in _builtin_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile by name, or any TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = _builtin_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise ProfileError(f"unknown profile '{name_or_path}'; known: {', '.join(profile_names())}")
    elif not os.path.lexists(path):
        raise ProfileError("no such profile file", path)
    data = read_toml(path, MAX_PROFILE_BYTES, ProfileError)
    return parse_profile(data, path.stem, path)
