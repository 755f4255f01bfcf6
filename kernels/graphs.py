"""One-node ONNX models of our ops, built from kernels/schemas.py, and a way to run them.

Tests and benchmarks use these to exercise a kernel the way a fused graph will: as a node that
ONNX Runtime resolves through the registered custom-op library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .schemas import DOMAIN, DOMAIN_VERSION, SCHEMAS, Arg, OpSchema


def node_model(op: str, inputs: Mapping[str, np.ndarray | None], attributes: Mapping[str, int | float],
               opset: int = 17, outputs: Sequence[str] | None = None) -> bytes:
    """A serialized model with one `qwdeploy` node; inputs left None (or absent) become "" optionals, and
    it returns `outputs` (default: the schema's required ones).

    Every given input is a graph input of its array's dtype and shape, so a run feeds the same arrays."""
    from onnx import helper

    schema = SCHEMAS[op]
    unknown = set(inputs) - {a.name for a in schema.inputs}
    if unknown:
        raise ValueError(f"{op} has no input(s) {sorted(unknown)}")
    names = _trimmed([a.name if inputs.get(a.name) is not None else "" for a in schema.inputs])
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(inputs[n].dtype),
                                                  list(inputs[n].shape)) for n in names if n]
    returned = [o for o in schema.outputs if (o.name in outputs if outputs is not None else not o.optional)]
    if outputs is not None and len(returned) != len(outputs):
        raise ValueError(f"{op} has no output(s) {sorted(set(outputs) - {o.name for o in returned})}")
    graph_outputs = [helper.make_tensor_value_info(o.name, helper.np_dtype_to_tensor_dtype(_dtype(o, schema, inputs)),
                                                   None) for o in returned]
    slots = _trimmed([o.name if o in returned else "" for o in schema.outputs])  # outputs are positional
    node = helper.make_node(op, names, slots, domain=DOMAIN, **dict(attributes))
    graph = helper.make_graph([node], f"qwdeploy_{op}", graph_inputs, graph_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])
    model.ir_version = 8
    return model.SerializeToString()


def _dtype(output: Arg, schema: OpSchema, inputs: Mapping[str, np.ndarray | None]) -> np.dtype:
    """An output's element type; one of several types is that of the inputs allowed the same ones (as ONNX
    Runtime infers a custom op's): GroupQueryAttention's present is its past's."""
    if len(output.dtypes) == 1:
        return np.dtype(output.dtype)
    given = [a for a in schema.inputs if inputs.get(a.name) is not None]
    return next(inputs[a.name].dtype for a in given if a.dtype == output.dtype)


def _trimmed(slots: list[str]) -> list[str]:
    """Node slots with the trailing optional ones ("") left off."""
    while slots and slots[-1] == "":
        slots.pop()
    return slots


def session(model: bytes, library: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
            threads: int = 0):
    """An InferenceSession with the custom-op library registered (threads=0: ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=list(providers))


def run_node(op: str, inputs: Mapping[str, np.ndarray | None], attributes: Mapping[str, int | float],
             library: str | Path, providers: Sequence[str] = ("CPUExecutionProvider",),
             outputs: Sequence[str] | None = None) -> list[np.ndarray]:
    sess = session(node_model(op, inputs, attributes, outputs=outputs), library, providers)
    feeds = {name: value for name, value in inputs.items() if value is not None}
    return sess.run(None, feeds)
