"""A small ONNX graph builder: named nodes, inline constants, and ops whose form depends on the opset."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

MIN_OPSET = 13  # Unsqueeze/ReduceSum take axes as inputs from here on
MAX_OPSET = 21
DEFAULT_OPSET = 17  # widely supported (ONNX Runtime >= 1.12, TensorRT 8.6, CANN uses 11-15: profiles pick 13)

# Reductions whose `axes` moved from an attribute to an input, and the opset where it happened.
AXES_AS_INPUT = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18}


class GraphBuilder:
    """Collects nodes and small constant initializers; every node gets a unique scoped name."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[NodeProto] = []
        self.constants: list[TensorProto] = []
        self._scope: list[str] = []
        self._used: dict[str, int] = {}
        self._const_cache: dict[tuple, str] = {}

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def _unique(self, base: str) -> str:
        n = self._used.get(base, 0)
        self._used[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, out: str | None = None, **attrs) -> str | list[str]:
        """Append a node; return its output name (or names when `outputs` > 1). `out` names a graph output."""
        name = self._unique("/" + "/".join([*self._scope, op_type]))
        outs = [out] if out else [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value: float | int | Sequence | np.ndarray, dtype: np.dtype | type = np.int64) -> str:
        """A small constant initializer, shared between all uses of the same value."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._const_cache:
            name = f"const_{len(self._const_cache)}"
            self.constants.append(numpy_helper.from_array(array, name))
            self._const_cache[key] = name
        return self._const_cache[key]

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: int = 1) -> str:
        if self.opset >= AXES_AS_INPUT[op_type]:
            return self.op(op_type, x, self.const(list(axes)), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Unsqueeze", x, self.const(list(axes)))

    def reshape(self, x: str, shape: Sequence[int] | str) -> str:
        """Reshape to a constant shape (0 copies the input dimension, -1 infers one) or a shape tensor."""
        return self.op("Reshape", x, shape if isinstance(shape, str) else self.const(list(shape)))

    def cast(self, x: str, to: int, source: int) -> str:
        return x if to == source else self.op("Cast", x, to=to)

    def dim(self, x: str, axis: int) -> str:
        """Dimension `axis` of x as a 1-element int64 tensor."""
        return self.op("Gather", self.op("Shape", x), self.const([axis]), axis=0)

    def slice_last(self, x: str, start: int, end: int) -> str:
        return self.op("Slice", x, self.const([start]), self.const([end]), self.const([-1]))


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
BOOL = TensorProto.BOOL
