"""What the exported ONNX folder says about itself: weight bytes, KV layout, context, kernel library."""

from __future__ import annotations

import json
from dataclasses import dataclass
import platform
from pathlib import Path

import onnx
from onnx import helper

from ....kernels.targets import host_arch
from ...errors import ArtifactError
from ...layout import BACKEND_MANIFEST, GENAI_CONFIG, MODEL_FILE, BackendManifest

STANDARD_DOMAINS = ("", "ai.onnx", "com.microsoft")
PAST_PREFIX = "past_key_values."


@dataclass(frozen=True)
class GraphFacts:
    nodes: int
    weight_bytes: int
    gathered_bytes: int  # initializers only ever read through Gather's data input (embedding tables)
    kv_bytes_per_token: int
    kv_dtype: str
    past_inputs: dict[str, tuple[int, int]]  # name → (kv_heads, head_dim)
    vocab_size: int
    context_length: int | None
    custom_domains: tuple[str, ...]
    static_context: int | None = None  # fixed KV buffer length (static graphs, backends/cann); None: growing
    inputs: frozenset[str] = frozenset()  # what the graph declares; builders differ (genai derives positions)
    kv_in_place: bool = False  # every past input feeds GroupQueryAttention alone: past and present may share a buffer


def _initializer_bytes(t: onnx.TensorProto) -> int:
    if t.data_location == onnx.TensorProto.EXTERNAL:
        entries = {e.key: e.value for e in t.external_data}
        if "length" in entries:
            return int(entries["length"])
    if t.raw_data:
        return len(t.raw_data)
    count = 1
    for d in t.dims:
        count *= d
    return count * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def _stored_as(t: onnx.TensorProto) -> tuple:
    """Where the tensor's bytes are kept: two initializers over one range of a data file are one weight."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        entries = {e.key: e.value for e in t.external_data}
        return entries.get("location"), entries.get("offset", "0"), entries.get("length")
    return ("inline", t.name)


def _gathered_only(graph: onnx.GraphProto, names: set[str]) -> set[str]:
    other_uses = {name for node in graph.node for i, name in enumerate(node.input)
                  if name in names and not (node.op_type == "Gather" and i == 0)}
    gathered = {node.input[0] for node in graph.node if node.op_type == "Gather" and node.input[0] in names}
    return gathered - other_uses


def _attention_only(graph: onnx.GraphProto, names: set[str]) -> bool:
    """Whether every use of `names` is a GroupQueryAttention's past_key or past_value."""
    uses = [(node, slot) for node in graph.node for slot, name in enumerate(node.input) if name in names]
    return bool(uses) and all(node.op_type == "GroupQueryAttention" and slot in (3, 4) for node, slot in uses)


def _genai_model(folder: Path) -> dict:
    """genai_config.json's "model" section; empty when the folder has none or it is unreadable."""
    try:
        model = json.loads((folder / GENAI_CONFIG).read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return model if isinstance(model, dict) else {}


def _int_at(table: dict, *keys: str) -> int | None:
    """The integer at table[k0][k1]..., None when absent or not an integer."""
    try:
        for key in keys:
            table = table[key]
        return int(table)
    except (KeyError, TypeError, ValueError):
        return None


def read_graph(folder: Path) -> GraphFacts:
    model = onnx.load(str(folder / MODEL_FILE), load_external_data=False)
    graph = model.graph
    sizes = {t.name: _initializer_bytes(t) for t in graph.initializer}
    stored = {t.name: _stored_as(t) for t in graph.initializer}
    gathered = _gathered_only(graph, set(sizes))
    read = {stored[n] for n in sizes if n not in gathered}
    gathered_bytes = sum({stored[n]: sizes[n] for n in gathered if stored[n] not in read}.values())
    past, kv_bytes, kv_dtype, static = {}, 0, "float32", None
    genai = _genai_model(folder)
    for value in graph.input:
        if not value.name.startswith(PAST_PREFIX):
            continue
        tensor = value.type.tensor_type
        heads, head_dim = tensor.shape.dim[1].dim_value, tensor.shape.dim[3].dim_value  # [batch, kv_heads, past, head_dim]
        # The genai builder leaves head_dim symbolic ("kv_cache_dim") and states it in its config.
        head_dim = head_dim or _int_at(genai, "decoder", "head_size") or 0
        if not (heads and head_dim):
            raise ArtifactError(f"input {value.name} does not state its KV heads and head size", folder / MODEL_FILE)
        static = tensor.shape.dim[2].dim_value or None
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        past[value.name] = (heads, head_dim)
        kv_bytes += heads * head_dim * dtype.itemsize
        kv_dtype = dtype.name
    logits = graph.output[0].type.tensor_type.shape.dim
    domains = tuple(sorted({node.domain for node in graph.node} - set(STANDARD_DOMAINS)))
    return GraphFacts(nodes=len(graph.node), weight_bytes=sum({stored[n]: b for n, b in sizes.items()}.values()),
                      gathered_bytes=gathered_bytes, kv_bytes_per_token=kv_bytes, kv_dtype=kv_dtype,
                      past_inputs=past, vocab_size=logits[-1].dim_value,
                      context_length=static or _int_at(genai, "context_length"), custom_domains=domains,
                      static_context=static,
                      inputs=frozenset(value.name for value in graph.input),
                      kv_in_place=not static and _attention_only(graph, set(past)))


def foreign_kernels(folder: Path) -> str | None:
    """Why this machine cannot run the folder's graph as its device would: ops without a kernel library, or a
    library built for another CPU (it may not load, or fault on instructions this one lacks); None when it can."""
    domains = read_graph(folder).custom_domains
    if not domains:
        return None
    manifest = BackendManifest.read(folder)
    record = manifest.custom_ops if manifest is not None else None
    if record is None or not record.library:
        return f"the graph has {', '.join(domains)} ops and no kernel library for them"
    if not record.runs_on(host_arch()):
        return f"its kernel library is built for {record.target}, not for this machine ({platform.machine()})"
    return None


def custom_op_libraries(folder: Path, facts: GraphFacts) -> list[Path]:
    """The kernel library the backend manifest records; an error when the graph needs one and none is named."""
    manifest = BackendManifest.read(folder)
    library = manifest.custom_ops.library if manifest is not None and manifest.custom_ops.emitted else None
    if library:
        path = folder / library
        if not path.is_file():
            raise ArtifactError(f"names kernel library '{library}', which is not in the folder", folder / BACKEND_MANIFEST)
        return [path.resolve()]
    if facts.custom_domains:
        raise ArtifactError(f"the graph uses ops of domain {', '.join(facts.custom_domains)} but no "
                            f"{BACKEND_MANIFEST} names a kernel library for them", folder)
    return []
