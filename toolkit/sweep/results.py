"""What a sweep found per cell, typed; FIGURES names every number a table, plot or choice rule reads."""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Union, get_args, get_origin, get_type_hints

DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclass(frozen=True)
class Where:
    """The machine a step ran on."""

    node: str  # a Ray node id, or "local"
    host: str
    device: str  # the device kind it measured on (devices.DEVICES)
    stand_in: bool  # this machine measured in place of the target device

    def label(self, target: str) -> str:
        if self.stand_in:
            return f"{self.host} ({self.device}, standing in for {target})"
        return f"ray node {self.node[:12]} ({self.host})"


@dataclass(frozen=True)
class Built:
    """An exported artifact: its file or folder name in the artifacts folder, and what it holds."""

    name: str
    size_bytes: int
    sha256: str  # of the file, or of the folder's sorted (path, sha256) list (state.digest)
    weight_bytes: int
    kv_bytes_per_token: int
    context_length: int | None


@dataclass(frozen=True)
class Quality:
    positions: int  # text tokens scored
    perplexity: float | None  # None when the plan did not ask for it (or it was not finite)
    reference_perplexity: float | None
    ppl_ratio: float | None
    kl_mean: float | None  # nats, KL(reference || artifact)
    top1: float | None  # share of positions whose argmax matches the reference's
    where: Where


@dataclass(frozen=True)
class Speed:
    ttft_s: float  # medians over the counted runs
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    host_peak_bytes: int
    device_peak_bytes: int | None
    where: Where

    @property
    def peak_bytes(self) -> int:
        return self.device_peak_bytes if self.device_peak_bytes is not None else self.host_peak_bytes


@dataclass(frozen=True)
class Fit:
    total_bytes: int  # weights + KV cache + runtime overhead, as `package` plans it
    budget_bytes: int
    fits: bool


@dataclass(frozen=True)
class CellResult:
    id: str  # checkpoint/format-quant/target
    checkpoint: str
    format: str
    quant: str
    target: str
    status: str  # DONE, FAILED or SKIPPED
    reason: str | None  # why skipped, or the first step's one-line error
    inputs: str | None  # state.cell_key of what it was computed from; None when skipped
    artifact: Built | None = None
    fit: Fit | None = None
    quality: Quality | None = None
    speed: Speed | None = None
    usd_per_million_tokens: float | None = None
    reused: bool = False  # read back from an earlier run's cell log

    def figure(self, name: str) -> float | None:
        return FIGURES[name].read(self)


@dataclass(frozen=True)
class Figure:
    label: str  # a table heading
    best: str  # how a choice rule words "best by this"
    higher_is_better: bool
    read: Callable[[CellResult], float | None]


def _quality(name: str) -> Callable[[CellResult], float | None]:
    return lambda c: None if c.quality is None else getattr(c.quality, name)


def _speed(name: str) -> Callable[[CellResult], float | None]:
    return lambda c: None if c.speed is None else getattr(c.speed, name)


FIGURES: dict[str, Figure] = {
    "decode_tokens_per_s": Figure("decode tok/s", "fastest decode", True, _speed("decode_tokens_per_s")),
    "prefill_tokens_per_s": Figure("prefill tok/s", "fastest prefill", True, _speed("prefill_tokens_per_s")),
    "ttft_s": Figure("TTFT s", "shortest time to first token", False, _speed("ttft_s")),
    "peak_bytes": Figure("peak MiB", "least peak memory", False, _speed("peak_bytes")),
    "size_bytes": Figure("size MiB", "smallest artifact", False,
                         lambda c: None if c.artifact is None else c.artifact.size_bytes),
    "usd_per_million_tokens": Figure("USD/1M tok", "cheapest per million tokens", False,
                                     lambda c: c.usd_per_million_tokens),
    "ppl_ratio": Figure("ppl ratio", "closest perplexity to the checkpoint", False, _quality("ppl_ratio")),
    "kl_mean": Figure("KL", "lowest KL to the checkpoint", False, _quality("kl_mean")),
    "top1": Figure("top-1", "most top-1 agreement with the checkpoint", True, _quality("top1")),
}


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a figure that is not finite is recorded as unknown."""
    return value if value is not None and math.isfinite(value) else None


def _optional(kind: Any) -> Any:
    if get_origin(kind) in (Union, types.UnionType):
        present = [k for k in get_args(kind) if k is not type(None)]
        return present[0] if len(present) == 1 else kind
    return kind


def from_json(cls: type, data: Any) -> Any:
    """A dataclass (nested ones included) from its dataclasses.asdict() form; KeyError/TypeError when it does
    not match, which the cell log treats as "not reusable"."""
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
        raise TypeError(f"{cls.__name__}: keys differ")
    hints = get_type_hints(cls)
    values = {}
    for name, value in data.items():
        kind = _optional(hints[name])
        values[name] = from_json(kind, value) if value is not None and is_dataclass(kind) else value
    return cls(**values)
