"""Name → implementation tables whose entries import only when used."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from .errors import QwdeployError

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """Maps a name to "module:attribute"; the module is imported on first `get`."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)
        self._loaded: dict[str, T] = {}

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise QwdeployError(f"unknown {self.kind} '{name}'; known: {', '.join(self._entries)}")
        if name not in self._loaded:
            module, _, attr = self._entries[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]
