"""A sweep plan: TOML data naming checkpoints, artifact types, targets, what to measure and how to choose.

Loaded as strictly as device profiles: the dataclasses below are the schema (a table per dataclass, a key
per field, its annotation the TOML type), unknown keys are one-line errors naming the file and the key.

    targets = ["rpi5", "boards/edge.toml"]   # profile names or TOML paths; before the first [table]

    [checkpoints]                            # name = folder (relative to this file)
    qwen2-0_5b = "models/Qwen2.5-0.5B"

    [export]                                 # format = its types
    gguf = ["q8_0", "q4_0"]
    onnx = ["int4"]

    [eval]                                   # optional
    metrics = ["perplexity", "agreement"]    # [] measures speed only
    positions = 256

    [profile]                                # optional: as `qwdeploy profile`
    prompt_len = 128
    gen = 32
    runs = 3

    [choose]                                 # optional: the best cell per target
    by = "decode_tokens_per_s"
    max_ppl_ratio = 1.05

    [cluster]                                # optional, --ray only
    shared = "/mnt/sweep"                    # artifacts go here instead of through Ray's object store
"""

from __future__ import annotations

import math
import re
import types
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from ..errors import PlanError
from ..files import brief, read_toml
from ..profiles import CHOICES as PROFILE_CHOICES, DeviceProfile, load_profile
from ..selection import FORMATS
from .results import FIGURES

EVAL_METRICS = ("perplexity", "agreement")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # names become file names and cell ids
MAX_PLAN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] = EVAL_METRICS
    positions: int = 256  # text tokens scored, capped by the text and the artifact's context
    text: Path | None = None  # None: eval's built-in text


@dataclass(frozen=True)
class ProfileSettings:
    prompt_len: int = 128
    gen: int = 32
    runs: int = 3
    threads: int | None = None  # None: the runtime's own choice


@dataclass(frozen=True)
class Rule:
    """The best cell per target: the best `by` among the cells that fit and meet every limit set."""

    by: str = "decode_tokens_per_s"
    max_ppl_ratio: float | None = None
    max_kl: float | None = None
    min_top1: float | None = None


@dataclass(frozen=True)
class ClusterSettings:
    shared: Path | None = None  # a folder every node mounts at this path


@dataclass(frozen=True)
class Plan:
    source: Path
    checkpoints: dict[str, Path]
    export: dict[str, tuple[str, ...]]  # format → its types
    targets: tuple[DeviceProfile, ...]
    eval: EvalSettings = field(default_factory=EvalSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    choose: Rule = field(default_factory=Rule)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


SECTIONS = {"eval": EvalSettings, "profile": ProfileSettings, "choose": Rule, "cluster": ClusterSettings}
TOP_LEVEL = ("targets", "checkpoints", "export", *SECTIONS)
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("eval", "metrics"): EVAL_METRICS,
    ("choose", "by"): tuple(FIGURES),
}
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("eval", "positions"): (2, 1_000_000),
    ("profile", "prompt_len"): (1, 1_000_000),
    ("profile", "gen"): (2, 1_000_000),
    ("profile", "runs"): (1, 1000),
    ("profile", "threads"): (1, 4096),
    ("choose", "max_ppl_ratio"): (0.0, 1e6),
    ("choose", "max_kl"): (0.0, 1e6),
    ("choose", "min_top1"): (0.0, 1.0),
}
# A limit of the choice rule → the eval metric that measures it.
NEEDS_METRIC = {"max_ppl_ratio": "perplexity", "max_kl": "agreement", "min_top1": "agreement",
                "ppl_ratio": "perplexity", "kl_mean": "agreement"}


def _base(kind: Any) -> Any:
    """`int | None` → int: TOML has no null, so an optional key is simply left out."""
    if get_origin(kind) in (Union, types.UnionType):
        return next(k for k in get_args(kind) if k is not type(None))
    return kind


def _ok(value: Any, kind: Any) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == tuple[str, ...]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str if kind is Path else kind)


def _value(where: str, key: str, value: Any, kind: Any, source: Path) -> Any:
    """The checked TOML value as the field's type (paths relative to the plan's folder)."""
    kind = _base(kind)
    if not _ok(value, kind):
        names = {float: "a finite number", int: "an integer", tuple[str, ...]: "a list of strings", str: "a string",
                 Path: "a path (string)"}
        raise PlanError(f"[{where}] '{key}' must be {names[kind]}, got {brief(value)}", source)
    low, high = RANGES.get((where, key), (-math.inf, math.inf))
    if kind in (int, float) and not low <= value <= high:
        raise PlanError(f"[{where}] '{key}' must be from {low:g} to {high:g}, got {value}", source)
    allowed = CHOICES.get((where, key))
    bad = [v for v in (value if isinstance(value, list) else [value]) if allowed and v not in allowed]
    if bad:
        raise PlanError(f"[{where}] '{key}' has unknown value {brief(bad[0])}; allowed: {', '.join(allowed)}", source)
    if kind is Path:
        return source.parent / value
    return tuple(value) if isinstance(value, list) else float(value) if kind is float else value


def _section(name: str, cls: type, data: Any, source: Path) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"[{name}] must be a table", source)
    hints, known = get_type_hints(cls), {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise PlanError(f"[{name}] has unknown key {brief(key)}; known: {', '.join(known)}", source)
    for key, f in known.items():
        if key not in data and f.default is MISSING and f.default_factory is MISSING:
            raise PlanError(f"[{name}] is missing required key '{key}'", source)
    return cls(**{key: _value(name, key, value, hints[key], source) for key, value in data.items()})


def _name(where: str, name: str, source: Path) -> str:
    if not NAME.fullmatch(name):
        raise PlanError(f"[{where}] name {brief(name)} must be letters, digits, '.', '_' or '-' (it names files)",
                        source)
    return name


def _checkpoints(data: Any, source: Path) -> dict[str, Path]:
    if not isinstance(data, dict) or not data:
        raise PlanError("[checkpoints] must be a table of name = \"folder\" entries, at least one", source)
    found = {}
    for name, folder in data.items():
        if not isinstance(folder, str):
            raise PlanError(f"[checkpoints] '{_name('checkpoints', name, source)}' must be a folder path (string), "
                            f"got {brief(folder)}", source)
        path = source.parent / folder
        if not path.is_dir():
            raise PlanError(f"[checkpoints] '{name}': no such folder {path}", source)
        found[_name("checkpoints", name, source)] = path
    return found


def _export(data: Any, source: Path) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict) or not data:
        raise PlanError(f"[export] must be a table of format = [types], e.g. gguf = [\"q8_0\"]; formats: "
                        f"{', '.join(FORMATS)}", source)
    known = PROFILE_CHOICES[("deploy", "prefer")]  # every "format:type" qwdeploy writes
    for fmt, quants in data.items():
        if fmt not in FORMATS:
            raise PlanError(f"[export] has unknown format {brief(fmt)}; known: {', '.join(FORMATS)}", source)
        if not isinstance(quants, list) or not quants or not all(isinstance(q, str) for q in quants):
            raise PlanError(f"[export] '{fmt}' must be a non-empty list of type names", source)
        for quant in quants:
            if f"{fmt}:{quant}" not in known:
                allowed = ", ".join(k.partition(":")[2] for k in known if k.startswith(f"{fmt}:"))
                raise PlanError(f"[export] '{fmt}' has unknown type {brief(quant)}; allowed: {allowed}", source)
    return {fmt: tuple(dict.fromkeys(quants)) for fmt, quants in data.items()}


def _targets(data: Any, source: Path) -> tuple[DeviceProfile, ...]:
    if not isinstance(data, list) or not data or not all(isinstance(t, str) for t in data):
        raise PlanError("'targets' must be a non-empty list of profile names or TOML paths, given before the first "
                        "[table]", source)
    profiles = [load_profile(source.parent / t if t.endswith(".toml") else t) for t in data]
    names = [_name("targets", p.name, source) for p in profiles]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise PlanError(f"'targets' names the profile '{twice}' twice (profile names come from file names)", source)
    return tuple(profiles)


def _check_rule(plan: Plan) -> None:
    rule, metrics = plan.choose, plan.eval.metrics
    for key in ("max_ppl_ratio", "max_kl", "min_top1"):
        if getattr(rule, key) is not None and NEEDS_METRIC[key] not in metrics:
            raise PlanError(f"[choose] '{key}' needs '{NEEDS_METRIC[key]}' in [eval] metrics", plan.source)
    if rule.by in NEEDS_METRIC and NEEDS_METRIC[rule.by] not in metrics:
        raise PlanError(f"[choose] by = '{rule.by}' needs '{NEEDS_METRIC[rule.by]}' in [eval] metrics", plan.source)


def parse_plan(data: dict, source: Path) -> Plan:
    for key in data:
        if key not in TOP_LEVEL:
            raise PlanError(f"unknown key {brief(key)}; known: {', '.join(TOP_LEVEL)}", source)
    for key in ("targets", "checkpoints", "export"):
        if key not in data:
            raise PlanError(f"is missing '{key}'", source)
    sections = {key: _section(key, cls, data[key], source) for key, cls in SECTIONS.items() if key in data}
    plan = Plan(source=source, checkpoints=_checkpoints(data["checkpoints"], source),
                export=_export(data["export"], source), targets=_targets(data["targets"], source), **sections)
    _check_rule(plan)
    if plan.eval.text is not None and not plan.eval.text.is_file():
        raise PlanError(f"[eval] 'text': no such file {plan.eval.text}", source)
    return plan


def load_plan(path: Path) -> Plan:
    """A plan from its TOML file; one-line PlanError (or ProfileError for a target) when it is wrong."""
    path = Path(path).absolute()
    data = read_toml(path, MAX_PLAN_BYTES, PlanError)
    return parse_plan(data, path)
