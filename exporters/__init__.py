"""Checkpoint → artifact converters, one sub-package per format, registered by name."""

from __future__ import annotations

from ..toolkit.registry import LazyRegistry

EXPORTERS = LazyRegistry("export format", {})
