"""A mutable view of an ONNX graph for passes: who produces and who consumes each value, constants as numpy.

Passes look nodes up through this index and never scan the node list by hand; `expect` raises
`Reject` with a reason, which is how a fusion's check says why a candidate does not fit.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from ..toolkit.external_data import (ExternalDataWriter, external_array, external_key, external_rows, is_external,
                                     renamed, rows_per_slice)

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
SPILL_BYTES = 1 << 16  # new constants this large go to the spill file, not into the in-memory model


def attributes(node: NodeProto) -> dict:
    """A node's attributes, name → Python value, as helper.make_node takes them back."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _dtype(tensor: TensorProto) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))


class Reject(Exception):
    """A candidate that a fusion's check turned down; the message says why."""


class Graph:
    def __init__(self, model: ModelProto, base_dir: Path | None = None, spill: ExternalDataWriter | None = None):
        """`base_dir`: where the external data files of a model loaded without its data live. `spill`: a
        scratch data file for large new constants (packed and quantized weights), so a build holds about one
        weight in memory at a time rather than all it has made; without one they stay in the model."""
        self.model = model
        self.base_dir = base_dir
        self.spill = spill
        self.graph = model.graph
        # Passes edit copies (protobuf's repeated-field wrappers are not stable objects); `commit` writes
        # them back. Each live node has an order key: a rewrite's nodes take the keys below the slot of
        # the last node they replace, so a rewrite costs the size of the change, not of the graph.
        self._nodes: dict[int, NodeProto] = {}
        self._key: dict[int, tuple[int, ...]] = {}
        self._listed: list[NodeProto] | None = None
        self._init = {t.name: t for t in self.graph.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        # Constants made when read (add_concat): name → (parts, axis); _init holds a data-less TensorProto.
        self._lazy: dict[str, tuple[tuple[str, ...], int]] = {}
        self._used_names: set[str] = set()
        self.outputs = {o.name for o in self.graph.output}
        self.inputs = {i.name for i in self.graph.input}
        nodes = []
        for stored in self.graph.node:
            node = NodeProto()
            node.CopyFrom(stored)
            nodes.append(node)
        self._renumber(nodes)

    # --- index -------------------------------------------------------------------------------------
    @property
    def node(self) -> list[NodeProto]:
        """The live nodes in graph order (a fresh list: edit the graph through its methods)."""
        if self._listed is None:
            self._listed = sorted(self._nodes.values(), key=lambda n: self._key[id(n)])
        return list(self._listed)

    def alive(self, node: NodeProto) -> bool:
        return id(node) in self._nodes

    def _renumber(self, nodes: list[NodeProto]) -> None:
        self._nodes, self._key = {}, {}
        self.producer: dict[str, NodeProto] = {}
        self._users: dict[str, dict[int, NodeProto]] = {}  # value → its readers by id: O(1) to drop one
        for i, node in enumerate(nodes):
            self._add(node, (i,))
        self._top = len(nodes) - 1
        self._listed = list(nodes)

    def _add(self, node: NodeProto, key: tuple[int, ...]) -> None:
        self._nodes[id(node)], self._key[id(node)] = node, key
        self._used_names.add(node.name)
        self._listed = None
        for out in node.output:
            if out:
                self.producer[out] = node
        for name in set(node.input) - {""}:
            self._users.setdefault(name, {})[id(node)] = node

    def _remove(self, node: NodeProto) -> None:
        del self._nodes[id(node)], self._key[id(node)]
        self._listed = None
        for out in node.output:
            if self.producer.get(out) is node:
                del self.producer[out]
        for name in set(node.input) - {""}:
            readers = self._users[name]
            del readers[id(node)]
            if not readers:
                del self._users[name]

    def nodes(self, op_type: str, domain: str = "") -> list[NodeProto]:
        return [n for n in self.node if n.op_type == op_type and n.domain == domain]

    def users(self, value: str) -> list[NodeProto]:
        """The nodes reading `value`, once per input slot that reads it."""
        return [n for n in self._users.get(value, {}).values() for name in n.input if name == value]

    def uses(self, value: str) -> int:
        """Reads plus one if `value` is a graph output."""
        return len(self.users(value)) + (value in self.outputs)

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
        users = self.users(value)
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

    def const(self, value: str, stored: bool = False) -> np.ndarray:
        """`stored`: a weight that references the checkpoint comes as stored there (toolkit/external_data.py:
        a memory map, maybe bf16, unchecked), for readers that cast it slice by slice themselves."""
        if value in self._lazy:
            parts, axis = self._lazy[value]
            arrays = [self.const(part, stored) for part in parts]
            if axis == 1 and all(a.ndim == 2 and a.T.flags.c_contiguous for a in arrays):
                # Transposed views ([K, N] over [N, K] rows): joined as rows, their order in memory, not by
                # gathering columns; the result is again such a view.
                return np.concatenate([a.T for a in arrays]).T  # not cached, as a stored weight
            return np.concatenate(arrays, axis)
        tensor = self._init.get(value)
        if tensor is not None and is_external(tensor):
            if self.base_dir is None:
                raise ValueError(f"'{value}' is in an external data file and the graph was given no base_dir")
            return external_array(tensor, self.base_dir, stored)  # not cached: a weight is read once, then let go
        if value not in self._arrays:
            if value in self._init:
                self._arrays[value] = numpy_helper.to_array(self._init[value])
            elif value in self.producer and self.producer[value].op_type == "Constant":
                self._arrays[value] = numpy_helper.to_array(self.producer[value].attribute[0].t)
            else:
                raise Reject(f"'{value}' is not a constant")
        return self._arrays[value]

    def shape(self, value: str) -> tuple[int, ...]:
        """A constant's shape, read from its declaration where it has one (no data is read or made)."""
        tensor = self._init.get(value)
        return tuple(tensor.dims) if tensor is not None else self.const(value).shape

    def row_blocks(self, value: str) -> list[np.ndarray]:
        """A constant matrix [K, N] as the row blocks of its transpose [N, K], each as stored (Graph.const): a
        packed weight's parts one by one, never joined, for a reader that goes row by row (the quantizer)."""
        if value in self._lazy and self._lazy[value][1] == 1:
            return [block for part in self._lazy[value][0] for block in self.row_blocks(part)]
        return [self.const(value, stored=True).T]

    def shared_storage(self) -> set[str]:
        """Initializers in use whose stored bytes another one in use also is (views made by add_view), e.g. a
        tied LM head's weights and the embedding table."""
        if self.base_dir is None:
            return set()
        by_key: dict[tuple, list[str]] = {}
        for name, tensor in self._init.items():
            if is_external(tensor) and self.uses(name):
                by_key.setdefault(external_key(tensor, self.base_dir), []).append(name)
        return {name for names in by_key.values() if len(names) > 1 for name in names}

    def same_storage(self, a: str, b: str) -> bool:
        """Whether two initializers are the same stored bytes (one a view of the other, add_view)."""
        ta, tb = self._init.get(a), self._init.get(b)
        return (self.base_dir is not None and ta is not None and tb is not None and is_external(ta)
                and is_external(tb) and external_key(ta, self.base_dir) == external_key(tb, self.base_dir))

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
        self._store(name, array)
        return name

    def add_rows(self, base: str, shape: tuple[int, ...], dtype: np.dtype, rows: Iterable[np.ndarray]) -> str:
        """A constant given as consecutive row blocks of its data. One that spills is written block by block as
        they come, so it is never whole in memory."""
        name = self.unique(base)
        self._store_rows(name, shape, np.dtype(dtype), rows)
        return name

    def _store_rows(self, name: str, shape: tuple[int, ...], dtype: np.dtype, rows: Iterable[np.ndarray]) -> None:
        if self.spill is not None and int(np.prod(shape)) * dtype.itemsize >= SPILL_BYTES:
            tensor = self.spill.write(name, shape, helper.np_dtype_to_tensor_dtype(dtype),
                                      (r.astype(dtype, copy=False) for r in rows))
            self.spill.flush()
        else:
            blocks = [np.asarray(r, dtype) for r in rows]
            array = blocks[0].reshape(shape) if len(blocks) == 1 else np.concatenate(
                [b.reshape(-1) for b in blocks]).reshape(shape)
            tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
            self._arrays[name] = array
        self.graph.initializer.append(tensor)
        self._init[name] = self.graph.initializer[-1]

    def _rows(self, value: str, step: int) -> Iterator[np.ndarray]:
        """The constant as const() reads it, in blocks of `step` rows along its first axis (fewer at a part's end
        when a lazy one joins its parts along that axis); a lazy one is made block by block, never whole."""
        if value in self._lazy:
            parts, axis = self._lazy[value]
            readers = [self._rows(part, step) for part in parts]
            # Along another axis the parts share the first one: their blocks line up.
            return chain(*readers) if axis == 0 else (np.concatenate(blocks, axis) for blocks in zip(*readers))
        tensor = self._init.get(value)
        if tensor is not None and is_external(tensor):
            return external_rows(tensor, self.base_dir, step)
        array = self.const(value)
        return (array[start:start + step] for start in range(0, len(array), step))

    def _store(self, name: str, array: np.ndarray) -> None:
        self._store_rows(name, array.shape, array.dtype, [array])

    def add_concat(self, base: str, parts: list[str], axis: int) -> str:
        """A constant equal to the constants `parts` concatenated along `axis`, made only when read: a pass
        that replaces it (a quantizer) reads it once in memory, and commit() stores it only if still in use,
        so packing weights that are quantized next writes no float copy of them."""
        name = self.unique(base)
        shapes = [self.shape(part) for part in parts]
        shape = list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes)
        first = self._init.get(parts[0])
        elem_type = (first.data_type if first is not None
                     else helper.np_dtype_to_tensor_dtype(self.const(parts[0]).dtype))
        self._init[name] = TensorProto(name=name, data_type=elem_type, dims=shape)
        self._lazy[name] = (tuple(parts), axis)
        return name

    def add_view(self, base: str, source: str, shape: tuple[int, ...]) -> str:
        """A constant holding `source`'s elements in another shape. Where they lie in a data file the view
        points at the same bytes, and the writer stores them once."""
        tensor = self._init[source]
        if int(np.prod(shape)) != int(np.prod(tensor.dims)):
            raise ValueError(f"a view of '{source}' {tuple(tensor.dims)} cannot have shape {shape}")
        if not is_external(tensor):
            return self.add_const(base, self.const(source).reshape(shape))
        view = renamed(tensor, self.unique(base), shape)
        self.graph.initializer.append(view)
        self._init[view.name] = self.graph.initializer[-1]
        return view.name

    def make(self, op_type: str, inputs: Iterable[str], outputs: int | list[str], name: str,
             domain: str = "", **attrs) -> NodeProto:
        """A new node (not yet in the graph); `outputs` is a count of fresh names or the names to use."""
        name = self.unique(name)
        outs = [f"{name}_output_{i}" for i in range(outputs)] if isinstance(outputs, int) else list(outputs)
        while outs and not outs[-1]:
            outs.pop()  # trailing optional outputs are left off, not named ""
        return helper.make_node(op_type, list(inputs), outs, name=name, domain=domain or None, **attrs)

    def append(self, *nodes: NodeProto) -> None:
        """Add nodes after every other (sort() later puts them after their inputs' producers)."""
        for node in nodes:
            self._top += 1
            self._add(node, (self._top,))

    def replace(self, old: list[NodeProto], new: list[NodeProto], rename: dict[str, str] | None = None) -> None:
        """Insert `new` where the last of `old` stood, drop `old`, and redirect uses of `rename`'s keys."""
        old = list({id(n): n for n in old}.values())
        slot = max(self._key[id(n)] for n in old)
        for node in old:
            self._remove(node)
        for i, node in enumerate(new):
            self._add(node, (*slot, i))
        for before, after in (rename or {}).items():
            for node in self._users.pop(before, {}).values():
                for i, name in enumerate(node.input):
                    if name == before:
                        node.input[i] = after
                self._users.setdefault(after, {})[id(node)] = node

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
        for name in [n for n in live if n in self._lazy]:
            live.update(self._lazy[name][0])  # what a lazy constant will be made from
        for name in [n for n in self._lazy if n not in live]:
            del self._lazy[name], self._init[name]
        dead = [n for n in self._nodes.values() if id(n) not in seen]
        for node in dead:
            self._remove(node)
        unused = [i for i, t in enumerate(self.graph.initializer) if t.name not in live]
        for i in reversed(unused):  # by index: remove(t) would compare whole tensors
            name = self.graph.initializer[i].name
            del self.graph.initializer[i]
            self._init.pop(name, None)
            self._arrays.pop(name, None)
        return len(dead)

    def sort(self) -> None:
        """Topological order, stable: the order of repeated sweeps that each take, in current order, every
        node whose inputs are ready. Computed in one walk: a node's sweep is the latest of its producers'
        sweeps, plus one for a producer that stands after it."""
        order = self.node
        position = {id(n): i for i, n in enumerate(order)}
        given = set(self.inputs) | set(self._init) | {""}
        sweep: dict[int, int] = {}
        for start in order:
            stack, open_ = [start], set()
            while stack:
                node = stack[-1]
                if id(node) in sweep:
                    stack.pop()
                    continue
                producers = []
                for name in node.input:
                    if name not in given:
                        if name not in self.producer:
                            raise ValueError(f"graph has a missing input at {node.name}: {name}")
                        producers.append(self.producer[name])
                waiting = [p for p in producers if id(p) not in sweep]
                if waiting:
                    if id(node) in open_ or any(id(p) in open_ for p in waiting):
                        raise ValueError(f"graph has a cycle through {node.name}")
                    open_.add(id(node))
                    stack.extend(waiting)
                    continue
                sweep[id(node)] = max([1, *(sweep[id(p)] + (position[id(p)] > position[id(node)])
                                            for p in producers)])
                open_.discard(id(node))
                stack.pop()
        self._renumber(sorted(order, key=lambda n: (sweep[id(n)], position[id(n)])))

    def commit(self, deferred: bool = False) -> ModelProto:
        """Store the lazy constants still in use, write the edited node list back into the model and return it.
        `deferred`: list them data-less instead, for the artifact writer to make as it writes them (made_rows),
        so a packed weight is never stored twice; the parts only they read leave the model, readable here."""
        if self._lazy:
            self.remove_dead()
            if deferred:
                self.graph.initializer.extend(self._init[name] for name in self._lazy)
                parts = {part for name in self._lazy for part in self._lazy[name][0]}
                read = self.outputs | set(self._users)
                kept = [t for t in self.graph.initializer if t.name not in parts or t.name in read]
                del self.graph.initializer[:]
                self.graph.initializer.extend(kept)
            else:
                for name in list(self._lazy):
                    tensor = self._init[name]
                    rows = self.made_rows(tensor)
                    del self._lazy[name], self._init[name]
                    self._store_rows(name, tuple(tensor.dims), _dtype(tensor), rows)
                self.remove_dead()  # the parts, now read by nothing
        del self.graph.node[:]
        self.graph.node.extend(self.node)
        return self.model

    def made_rows(self, tensor: TensorProto) -> Iterator[np.ndarray] | None:
        """A deferred constant's data (commit), made in consecutive row blocks; None for any other tensor."""
        if tensor.name not in self._lazy:
            return None
        return self._rows(tensor.name, rows_per_slice(tuple(tensor.dims), _dtype(tensor).itemsize))

    def drop_input(self, name: str) -> None:
        """Remove a graph input that nothing reads any more."""
        kept = [v for v in self.graph.input if v.name != name]
        del self.graph.input[:]
        self.graph.input.extend(kept)
        self.inputs.discard(name)

    def add_opset(self, domain: str, version: int) -> None:
        if not any(o.domain == domain for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(domain, version))

    def is_float(self, value: str) -> bool:
        return self.elem_type(value) in FLOAT_TYPES

    def elem_type(self, value: str) -> int:
        """Element type of a graph input or initializer (FLOAT when unknown)."""
        if value in self._init:
            return self._init[value].data_type
        for vi in [*self.graph.input, *self.graph.output, *self.graph.value_info]:
            if vi.name == value:
                return vi.type.tensor_type.elem_type
        return TensorProto.FLOAT
