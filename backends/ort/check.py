"""The graph check an ONNX Runtime artifact passes before it is written.

1. onnx.checker, with ONNX Runtime's own default-domain ops (SimplifiedLayerNormalization) moved
   to a private domain in the checked copy, since onnx does not know them;
2. every com.microsoft node against ONNX Runtime's own schema (op known, attributes known, input
   count within the schema), every qwdeploy node against kernels/schemas.py, including the element
   types of its inputs and outputs wherever the graph states them (graph inputs and outputs,
   initializers, value_info): without the kernel library no session would notice a float16 one;
3. an ONNX Runtime session on the providers given, when they exist here and no node lacks a
   kernel library: that proves ORT accepts the graph (types, shapes, kernels).
Returns a one-line description of what was checked; raises QwdeployError on a failed step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from ...kernels.schemas import DOMAIN, SCHEMAS, OpSchema
from ...toolkit.engines import run_isolated
from ...toolkit.errors import QwdeployError
from .fusions import MS

ORT_DEFAULT_DOMAIN_OPS = ("SimplifiedLayerNormalization",)  # ORT registers these under the onnx domain
CHECKED_AS = "ai.onnxruntime.default"


def _ort_schemas() -> dict[str, object]:
    from onnxruntime.capi import onnxruntime_pybind11_state as C

    return {s.name: s for s in C.get_all_operator_schema()
            if s.domain == MS or (s.domain == "" and s.name in ORT_DEFAULT_DOMAIN_OPS)}


def _stated_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Value name → the ONNX element type the graph states for it, where it states one."""
    stated = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)
              if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}
    stated.update((t.name, t.data_type) for t in graph.initializer)
    return stated


def _type_name(elem_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except KeyError:  # a number ONNX does not define: onnx.checker lets it through
        return f"element type {elem_type}"


def _type_problems(node: onnx.NodeProto, schema: OpSchema, stated: dict[str, int]) -> list[str]:
    problems = []
    for role, verb, names, args in (("input", "take", node.input, schema.inputs),
                                    ("output", "return", node.output, schema.outputs)):
        for name, arg in zip(names, args):
            found = stated.get(name)
            if found is not None and found not in {onnx.helper.np_dtype_to_tensor_dtype(np.dtype(d))
                                                   for d in arg.dtypes}:
                problems.append(f"{node.name}: {role} '{arg.name}' is {_type_name(found)}, the {DOMAIN} kernels "
                                f"{verb} {' or '.join(arg.dtypes)}")
    return problems


def _schema_problems(model: onnx.ModelProto) -> list[str]:
    ms, stated, problems = _ort_schemas(), _stated_types(model.graph), []
    for node in model.graph.node:
        attrs = {a.name for a in node.attribute}
        if node.domain == MS or (node.domain == "" and node.op_type in ORT_DEFAULT_DOMAIN_OPS):
            schema = ms.get(node.op_type)
            if schema is None:
                problems.append(f"{node.name}: ONNX Runtime has no {MS}:{node.op_type}")
                continue
            known = set(schema.attributes)
        elif node.domain == DOMAIN:
            schema = SCHEMAS.get(node.op_type)
            if schema is None:
                problems.append(f"{node.name}: kernels/schemas.py has no {DOMAIN}:{node.op_type}")
                continue
            known = {*schema.attributes, *schema.optional_attributes}
            missing = set(schema.attributes) - attrs
            if missing:
                problems.append(f"{node.name}: missing attributes {sorted(missing)}")
            problems += _type_problems(node, schema, stated)
        else:
            continue
        if attrs - known:
            problems.append(f"{node.name}: unknown attributes {sorted(attrs - known)}")
        for role, given, declared in (("inputs", node.input, schema.inputs), ("outputs", node.output, schema.outputs)):
            if len(given) > len(declared):
                problems.append(f"{node.name}: {len(given)} {role}, the schema has {len(declared)}")
    return problems


def _checker(model: onnx.ModelProto, path: Path) -> None:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.domain == "" and node.op_type in ORT_DEFAULT_DOMAIN_OPS:
            node.domain = CHECKED_AS
    copy.opset_import.append(onnx.helper.make_opsetid(CHECKED_AS, 1))
    checked = path.with_name(".checked." + path.name)  # beside the data file its tensors point into
    onnx.save_model(copy, str(checked))
    try:
        onnx.checker.check_model(str(checked))
    except onnx.checker.ValidationError as exc:
        raise QwdeployError(f"onnx.checker rejects the fused graph: {str(exc).splitlines()[0]}", path) from None
    finally:
        checked.unlink()


def check_artifact(path: Path, providers: list[str], custom_library: Path | None) -> str:
    model = onnx.load(str(path), load_external_data=False)
    _checker(model, path)
    problems = _schema_problems(model)
    if problems:
        raise QwdeployError(f"fused graph breaks an op schema: {problems[0]}", path)
    done = "onnx.checker, op schemas"
    needs_library = any(n.domain == DOMAIN for n in model.graph.node)
    if needs_library and custom_library is None:
        return f"{done}; no session (needs the {DOMAIN} kernel library, not built here)"
    import onnxruntime as ort

    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        return f"{done}; no session ({', '.join(missing)} not available here)"
    if custom_library is None:
        open_session(path, providers, None)
    else:  # our kernel library is native code: a fault in it must not take the export down
        run_isolated("ONNX Runtime with the qwdeploy kernel library", path, f"opening {path.name}",
                     "rebuild the kernels (qwdeploy kernels build --force) or export with -O custom_ops=off",
                     open_session_apart, path, providers, custom_library)
    return f"{done}, ONNX Runtime session on {', '.join(providers)}"


def open_session_apart(path: Path, providers: list[str], custom_library: Path) -> None:
    """open_session in a process of its own (run_isolated), without the kernels' copies of their weights into
    huge pages (kernels/cpu/resident.h): like prepacking, they prove nothing in a load check and cost memory."""
    os.environ["QWDEPLOY_HUGE_PAGES"] = "0"
    open_session(path, providers, custom_library)


def open_session(path: Path, providers: list[str], custom_library: Path | None) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.add_session_config_entry("session.disable_prepacking", "1")  # a second packed copy proves nothing
    options.log_severity_level = 3  # logits_to_keep is an overridable initializer on purpose (ort/last_logits.py)
    if custom_library is not None:
        options.register_custom_ops_library(str(custom_library))
    try:
        ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for graph errors
        raise QwdeployError(f"ONNX Runtime refuses the fused graph: {str(exc).splitlines()[0]}", path) from None
