"""What an export is asked to do, and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..toolkit.checkpoint import Checkpoint
from ..toolkit.profiles import DeviceProfile


@dataclass(frozen=True)
class ExportRequest:
    checkpoint: Checkpoint
    out: Path
    quant: str | None = None  # format-specific type name; None: the profile's or the format's default
    profile: DeviceProfile | None = None
    target: str | None = None  # backend name (ONNX only)
    via: str = "native"
    force: bool = False
    verify: bool | None = None  # None: the exporter decides (on for small models)
    show_progress: bool = True
    options: dict[str, object] = field(default_factory=dict)
    # The portable graph of a --target export, read only by the backend build: its weights stay in the checkpoint
    # (references, exporters/onnx/weights.py) and the folder goes unsealed.
    intermediate: bool = False

    @property
    def inputs(self) -> list[Path]:
        """What the output must never overlap: the checkpoint folder and the files its weights live in."""
        return [self.checkpoint.directory, *self.checkpoint.weights.files()]


@dataclass
class ExportResult:
    path: Path
    summary: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines for the terminal
