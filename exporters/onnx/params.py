"""Graph-side access to checkpoint weights by role, in the compute dtype."""

from __future__ import annotations

from ...toolkit.tensors import ExpectedTensor
from .builder import GraphBuilder
from .dtypes import Precision
from .weights import WeightStore

Key = tuple[str, int | None, int | None]  # (role, layer, expert)


class Params:
    """Looks a role up in the checkpoint's expected tensors, stores it once, casts it for compute."""

    def __init__(self, g: GraphBuilder, store: WeightStore, precision: Precision, expected: list[ExpectedTensor]):
        self._g = g
        self._store = store
        self._precision = precision
        self._names: dict[Key, str] = {(t.role, t.layer, t.expert): t.name for t in expected}
        self._cast: dict[str, str] = {}

    def has(self, role: str, layer: int | None = None) -> bool:
        return (role, layer, None) in self._names

    def _get(self, key: Key, transpose: bool) -> str:
        name = self._store.add(self._names[key], transpose)
        if self._precision.weight == self._precision.compute:
            return name
        if name not in self._cast:
            self._cast[name] = self._g.op("Cast", name, to=self._precision.compute)
        return self._cast[name]

    def matrix(self, role: str, layer: int | None = None, expert: int | None = None) -> str:
        """A Linear weight as [in, out], ready for MatMul."""
        return self._get((role, layer, expert), transpose=True)

    def tensor(self, role: str, layer: int | None = None) -> str:
        """A weight as stored: norms, biases, the embedding table [vocab, hidden]."""
        return self._get((role, layer, None), transpose=False)
