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
        except QwdeployError as exc:
            result[name] = str(exc)
        except ImportError as exc:  # an optional dependency of that plug-in is not installed
            result[name] = f"needs {exc.name or exc}"
    return result
