"""Which registered exporters and backends can handle a given model, and why not."""

from __future__ import annotations

from .errors import QwdeployError
from .spec import ModelSpec
from .registry import LazyRegistry


def support_matrix(spec: ModelSpec, registry: LazyRegistry) -> dict[str, str | None]:
    """name → None when supported, else the reason it is not."""
    result: dict[str, str | None] = {}
    for name in registry.names():
        try:
            result[name] = registry.get(name).unsupported_reason(spec)
        except QwdeployError as exc:  # including an optional package of that plug-in not installed
            result[name] = str(exc)
    return result
