"""User-facing errors: each carries one line that names the file and the problem.

The CLI prints these without a traceback and exits non-zero; anything else escaping is a bug.
"""

from __future__ import annotations

from pathlib import Path


class QwdeployError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class CheckpointError(QwdeployError):
    """A checkpoint directory or weight file that cannot be read as described."""


class UnsupportedModelError(QwdeployError):
    """A config whose architecture (or a feature of it) qwdeploy does not handle."""


class ProfileError(QwdeployError):
    """A device profile that is unknown or malformed."""


class MissingDependencyError(QwdeployError):
    """An optional package or tool the requested step needs is not installed."""

    exit_code = 3


class OutputError(QwdeployError):
    """The output path cannot be written (exists, not writable, disk full)."""


class EngineError(QwdeployError):
    """A native engine (llama.cpp, ONNX Runtime, our kernels) crashed or failed on an artifact."""

    exit_code = 4


class ArtifactError(QwdeployError):
    """An artifact file (GGUF/ONNX) that is corrupt or incomplete."""


class QualityGateError(QwdeployError):
    """An artifact evaluated below a limit the user set (`eval --max-kl` and friends): a result, not a fault."""

    exit_code = 5


class PlanError(QwdeployError):
    """A sweep plan (TOML) that is malformed or names something that does not exist."""
