"""Name → implementation tables whose entries import only when used."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from .errors import MissingDependencyError, QwdeployError

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """Maps a name to "module:attribute" (or just "module"); imported on first `get`."""

    def __init__(self, kind: str, entries: dict[str, str], planned: dict[str, str] | None = None):
        self.kind = kind
        self._entries = dict(entries)
        self._planned = dict(planned or {})  # name → why it is not here yet, so the error can say so
        self._loaded: dict[str, T] = {}

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> T:
        if name in self._planned:
            raise QwdeployError(f"{self.kind} '{name}' is not available in this version ({self._planned[name]}); "
                                f"available: {', '.join(self._entries)}")
        if name not in self._entries:
            raise QwdeployError(f"unknown {self.kind} '{name}'; known: {', '.join(self._entries)}")
        if name not in self._loaded:
            module_name, _, attr = self._entries[name].partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:  # an optional package this entry runs on is not installed
                if (exc.name or "").startswith("qwdeploy"):
                    raise
                raise MissingDependencyError(f"{self.kind} '{name}' needs {exc.name or exc}, which is not "
                                             "installed (pip install 'qwdeploy[all]')") from None
            self._loaded[name] = getattr(module, attr) if attr else module
        return self._loaded[name]
