"""A mutable view of an ONNX graph for passes: who produces and who consumes each value, constants as numpy.

Passes look nodes up through this index and never scan the node list by hand; `expect` raises
`Reject` with a reason, which is how a fusion's check says why a candidate does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from .external import external_array, is_external


class Reject(Exception):
    """A candidate that a fusion's check turned down; the message says why."""


class Graph:
    def __init__(self, model: ModelProto, base_dir: Path | None = None):
        """`base_dir`: where the external data files of a model loaded without its data live."""
        self.model = model
        self.base_dir = base_dir
        self.graph = model.graph
        # Passes edit this plain list (protobuf's repeated-field wrappers are not stable objects);
        # `commit` writes it back into the model.
        self.node: list[NodeProto] = []
        for stored in self.graph.node:
            node = NodeProto()
            node.CopyFrom(stored)
            self.node.append(node)
        self._init = {t.name: t for t in self.graph.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._used_names: set[str] = {n.name for n in self.node}
        self.reindex()

    # --- index -------------------------------------------------------------------------------------
    def reindex(self) -> None:
        self.producer: dict[str, NodeProto] = {}
        self.consumers: dict[str, list[NodeProto]] = {}
        for node in self.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.inputs = {i.name for i in self.graph.input}

    def nodes(self, op_type: str, domain: str = "") -> list[NodeProto]:
        return [n for n in self.node if n.op_type == op_type and n.domain == domain]

    def uses(self, value: str) -> int:
        """Consumers plus one if `value` is a graph output."""
        return len(self.consumers.get(value, [])) + (value in self.outputs)

    # --- matching ----------------------------------------------------------------------------------
    def expect(self, value: str, op_type: str, single_use: bool = False) -> NodeProto:
        node = self.producer.get(value)
        if node is None or node.op_type != op_type:
            found = "a graph input or constant" if node is None else node.op_type
            raise Reject(f"expected {op_type} producing '{value}', found {found}")
        if single_use and self.uses(value) != 1:
            raise Reject(f"'{value}' ({op_type}) has other uses")
        return node

    def follow(self, value: str, op_type: str) -> NodeProto:
        """The only consumer of `value`, which must be an `op_type` node."""
        users = self.consumers.get(value, [])
        if len(users) != 1 or users[0].op_type != op_type or value in self.outputs:
            found = ", ".join(n.op_type for n in users) or "nothing"
            raise Reject(f"expected '{value}' to feed one {op_type}, it feeds {found}")
        return users[0]

    def skip(self, value: str, op_type: str = "Cast") -> str:
        """The input of an optional `op_type` node in front of `value` (Casts that fp16 graphs insert)."""
        node = self.producer.get(value)
        return node.input[0] if node is not None and node.op_type == op_type else value

    def is_const(self, value: str) -> bool:
        return value in self._init or (value in self.producer and self.producer[value].op_type == "Constant")

    def const(self, value: str) -> np.ndarray:
        tensor = self._init.get(value)
        if tensor is not None and is_external(tensor):
            if self.base_dir is None:
                raise ValueError(f"'{value}' is in an external data file and the graph was given no base_dir")
            return external_array(tensor, self.base_dir)  # not cached: a weight is read once, then let go
        if value not in self._arrays:
            if value in self._init:
                self._arrays[value] = numpy_helper.to_array(self._init[value])
            elif value in self.producer and self.producer[value].op_type == "Constant":
                self._arrays[value] = numpy_helper.to_array(self.producer[value].attribute[0].t)
            else:
                raise Reject(f"'{value}' is not a constant")
        return self._arrays[value]

    def scalar(self, value: str) -> float:
        array = self.const(value)
        if array.size != 1:
            raise Reject(f"'{value}' has {array.size} elements, expected a scalar")
        return float(array.reshape(-1)[0])

    # --- rewriting ---------------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        name, n = base, 0
        while name in self._used_names or name in self.producer or name in self._init:
            n += 1
            name = f"{base}_{n}"
        self._used_names.add(name)
        return name

    def add_const(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        self._init[name] = self.graph.initializer[-1]
        self._arrays[name] = array
        return name

    def make(self, op_type: str, inputs: Iterable[str], outputs: int | list[str], name: str,
             domain: str = "", **attrs) -> NodeProto:
        """A new node (not yet in the graph); `outputs` is a count of fresh names or the names to use."""
        name = self.unique(name)
        outs = [f"{name}_output_{i}" for i in range(outputs)] if isinstance(outputs, int) else list(outputs)
        while outs and not outs[-1]:
            outs.pop()  # trailing optional outputs are left off, not named ""
        return helper.make_node(op_type, list(inputs), outs, name=name, domain=domain or None, **attrs)

    def replace(self, old: list[NodeProto], new: list[NodeProto], rename: dict[str, str] | None = None) -> None:
        """Insert `new` where the last of `old` stood, drop `old`, and redirect uses of `rename`'s keys."""
        ids = {id(n) for n in old}
        last = max(i for i, n in enumerate(self.node) if id(n) in ids)
        before = [n for n in self.node[:last] if id(n) not in ids]
        nodes = before + new + list(self.node[last + 1:])
        for node in nodes:
            for i, name in enumerate(node.input):
                if rename and name in rename:
                    node.input[i] = rename[name]
        self.node = nodes
        self.reindex()

    def remove_dead(self) -> int:
        """Drop nodes and initializers nothing uses; returns the number of nodes removed."""
        live, stack, seen = set(self.outputs), list(self.outputs), set()
        while stack:  # walk back from the graph outputs; node order may not be topological mid-pass
            node = self.producer.get(stack.pop())
            if node is not None and id(node) not in seen:
                seen.add(id(node))
                fresh = [i for i in node.input if i and i not in live]
                live.update(fresh)
                stack.extend(fresh)
        keep = [n for n in self.node if id(n) in seen]
        removed = len(self.node) - len(keep)
        self.node = keep
        unused = [t for t in self.graph.initializer if t.name not in live]
        for t in unused:
            self.graph.initializer.remove(t)
            self._init.pop(t.name, None)
            self._arrays.pop(t.name, None)
        self.reindex()
        return removed

    def sort(self) -> None:
        """Topological order (stable): rewrites may leave a node ahead of its inputs' producers."""
        ready = set(self.inputs) | set(self._init) | {""}
        pending, ordered = list(self.node), []
        while pending:
            rest = []
            for node in pending:
                if all(i in ready for i in node.input):
                    ordered.append(node)
                    ready.update(node.output)
                else:
                    rest.append(node)
            if len(rest) == len(pending):
                missing = [i for i in rest[0].input if i not in ready]
                raise ValueError(f"graph has a cycle or a missing input at {rest[0].name}: {missing}")
            pending = rest
        self.node = ordered
        self.reindex()

    def commit(self) -> ModelProto:
        """Write the edited node list back into the model and return it."""
        del self.graph.node[:]
        self.graph.node.extend(self.node)
        return self.model

    def add_opset(self, domain: str, version: int) -> None:
        if not any(o.domain == domain for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(domain, version))

    def elem_type(self, value: str) -> int:
        """Element type of a graph input or initializer (FLOAT when unknown)."""
        if value in self._init:
            return self._init[value].data_type
        for vi in [*self.graph.input, *self.graph.output, *self.graph.value_info]:
            if vi.name == value:
                return vi.type.tensor_type.elem_type
        return TensorProto.FLOAT
