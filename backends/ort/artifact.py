"""The folder an ONNX Runtime backend writes: fused graph + weights, tokenizer, genai config, kernel library."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto

from ...kernels.build import Build
from ...toolkit.layout import CHECKSUMS_FILE, DATA_FILE, GENAI_CONFIG, MODEL_FILE
from ...toolkit.external_data import ExternalDataWriter, external_key, external_rows, is_external, renamed
from .quant.config import LAYER

INLINE_BYTES = 1024  # smaller tensors stay in model.onnx
CUSTOM_OPS_KEY = "custom_ops_library"  # onnxruntime-genai's session option for a custom-op library


def nodes_per_layer(model: onnx.ModelProto) -> dict[int, int]:
    counts = Counter(int(m.group(1)) for n in model.graph.node if (m := LAYER.search(n.name + "/")))
    return dict(sorted(counts.items()))


def save_model(model: onnx.ModelProto, folder: Path, source: Path,
               made: Callable[[TensorProto], Iterator[np.ndarray] | None] = lambda tensor: None) -> dict[str, str]:
    """model.onnx plus one data file. Weights the passes left alone are copied slice by slice from the
    portable graph's data files in `source`; new ones (quantized, packed) are written from memory or the
    build's spill file; those `made` gives rows for (Graph.made_rows: deferred packed weights) as it makes them.
    Returns the data file's sha256, computed while writing."""
    data_name = DATA_FILE
    tensors = []
    written: dict[tuple, TensorProto] = {}  # where a source's bytes went: views of them (Graph.add_view) share it
    with open(folder / data_name, "wb") as data:
        writer = ExternalDataWriter(data, data_name)
        for tensor in model.graph.initializer:
            rows = made(tensor)
            if rows is not None:
                slices, key = rows, None
            elif is_external(tensor):
                key = external_key(tensor, source)
                if key in written:
                    tensors.append(renamed(written[key], tensor.name, tuple(tensor.dims)))
                    continue
                slices = external_rows(tensor, source)
            elif len(tensor.raw_data) >= INLINE_BYTES:
                slices, key = iter([np.frombuffer(tensor.raw_data, np.uint8)]), None
            else:
                tensors.append(tensor)
                continue
            tensors.append(writer.write(tensor.name, tuple(tensor.dims), tensor.data_type, slices))
            if key is not None:
                written[key] = tensors[-1]
    del model.graph.initializer[:]
    model.graph.initializer.extend(tensors)
    onnx.save_model(model, str(folder / MODEL_FILE))
    return {data_name: writer.sha256()}


def copy_side_files(portable: Path, folder: Path) -> None:
    """Tokenizer and generation files travel unchanged; the graph, genai config and checksums are rewritten."""
    for path in portable.iterdir():
        if path.is_file() and not path.name.startswith(MODEL_FILE) and path.name not in (GENAI_CONFIG, CHECKSUMS_FILE):
            shutil.copy2(path, folder / path.name)


def copy_library(build: Build, folder: Path) -> str:
    """The kernel library (with a portable build's ISA variants) copied into the artifact; returns the name
    configs record, the one ONNX Runtime registers."""
    for path in build.libraries():
        shutil.copy2(path, folder / path.name)
    return build.library.name


def write_genai_config(portable: Path, folder: Path, provider_options: list[dict], library: str | None) -> None:
    config = json.loads((portable / GENAI_CONFIG).read_text(encoding="utf-8"))
    session = config["model"]["decoder"]["session_options"]
    session["provider_options"] = provider_options
    if library is not None:
        session[CUSTOM_OPS_KEY] = library
    (folder / GENAI_CONFIG).write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
