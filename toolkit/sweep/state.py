"""What lets a rerun skip work: content keys of each cell's inputs, and the cell log under OUT/state.

A cell is reused when the log holds it finished with the same key; an artifact when its record has the same
key and the file still has the recorded sha256. Failed cells are logged for the record and run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_file
from ..checksums import file_sha256
from ..profiles import DeviceProfile
from .plan import Plan
from .results import DONE, Built, CellResult, from_json

STATE = "state"
# Weights are hashed by size and modification time (reading gigabytes per rerun would cost more than the
# work it saves); every other file of a checkpoint (config, index, tokenizer) by its bytes.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(checkpoint: Path) -> str:
    """The checkpoint folder's contents, not its location: a copy keeps its key, a rewritten config does not."""
    entries = []
    for path in sorted(p for p in checkpoint.iterdir() if p.is_file()):
        stat = path.stat()
        content = (stat.st_size, stat.st_mtime_ns) if path.suffix in WEIGHT_SUFFIXES else file_sha256(path)
        entries.append((path.name, content))
    return _sha(entries)


def digest(path: Path) -> str:
    """sha256 of a file, or of a folder's sorted (relative path, sha256) lines: what travels with an artifact."""
    if path.is_file():
        return file_sha256(path)
    lines = [f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n" for p in sorted(path.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _profile_content(profile: DeviceProfile) -> dict:
    content = asdict(profile)
    del content["source"]  # where the file lies does not change what it says
    return content


def artifact_key(checkpoint_key: str, fmt: str, quant: str, profile: DeviceProfile | None) -> str:
    """`profile` is the one the exporter builds for (ONNX: its backend, opset, kernel target); None for GGUF."""
    return _sha({"qwdeploy": __version__, "checkpoint": checkpoint_key, "format": fmt, "quant": quant,
                 "profile": None if profile is None else _profile_content(profile)})


def cell_key(artifact: str, profile: DeviceProfile, plan: Plan, mode: str) -> str:
    """Everything a cell's figures depend on; `mode` is where it runs ("local" or "ray")."""
    text = plan.eval.text
    settings = {**asdict(plan.eval), "text": None if text is None else file_sha256(text)}
    return _sha({"artifact": artifact, "target": _profile_content(profile), "eval": settings,
                 "profile": asdict(plan.profile), "mode": mode})


def _slug(cell_id: str) -> str:
    return cell_id.replace("/", "__")


class Store:
    """The cell log and the artifact records of one --out folder."""

    def __init__(self, out: Path):
        self.cells = out / STATE / "cells"
        self.artifacts = out / STATE / "artifacts"

    def _read(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def _write(self, path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(value, indent=1, default=str) + "\n", encoding="utf-8")

    def cell(self, cell_id: str, key: str) -> CellResult | None:
        """The logged result of a finished cell computed from the same inputs, else None."""
        data = self._read(self.cells / f"{_slug(cell_id)}.json")
        try:
            result = from_json(CellResult, data)
        except (TypeError, KeyError, ValueError):
            return None
        return result if result.status == DONE and result.inputs == key else None

    def save_cell(self, result: CellResult) -> None:
        self._write(self.cells / f"{_slug(result.id)}.json", asdict(result))

    def artifact(self, name: str, key: str, folder: Path) -> Built | None:
        """The record of an artifact built from the same inputs whose bytes are still what was recorded."""
        data = self._read(self.artifacts / f"{name}.json")
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        try:
            built = from_json(Built, data.get("built"))
        except (TypeError, KeyError, ValueError):
            return None
        path = folder / name
        return built if path.exists() and digest(path) == built.sha256 else None

    def save_artifact(self, key: str, built: Built) -> None:
        self._write(self.artifacts / f"{built.name}.json", {"key": key, "built": asdict(built)})
