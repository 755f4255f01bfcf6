"""model.onnx + model.onnx.data: the graph is built while its weights stream to disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from tqdm import tqdm

from ...toolkit.checkpoint import Checkpoint
from .builder import GraphBuilder
from .decoder import build_decoder, make_model
from .dtypes import Precision
from .params import Params
from ...toolkit.external_data import ExternalDataWriter
from .weights import WeightStore, data_path



@dataclass(frozen=True)
class WrittenGraph:
    nodes: int
    weight_bytes: int
    digests: dict[str, str]  # file name → sha256, for seal_folder


def write_onnx(checkpoint: Checkpoint, precision: Precision, opset: int, path: Path,
               show_progress: bool = True, by_reference: bool = False) -> WrittenGraph:
    """Write the decoder graph to `path` and its weights to `path`.data, hashed as they go; the proto holds only
    references. `by_reference`: leave the checkpoint's weights where they are (WeightStore) for a backend build
    to read, unhashed (WrittenGraph.digests is empty)."""
    expected = checkpoint.expected()
    total = sum(t.numel for t in expected) * precision.weight_numpy.itemsize
    data = data_path(path)
    with open(data, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc="onnx weights",
                                      disable=None if show_progress and not by_reference else True) as bar:
        writer = ExternalDataWriter(f, data.name, digest=not by_reference)
        store = WeightStore(checkpoint, precision, writer, bar.update, by_reference)
        g = GraphBuilder(opset)
        graph = build_decoder(checkpoint.spec, Params(g, store, precision, expected), g, precision)
    model = make_model(graph, [*store.initializers, *g.constants], opset)
    onnx.save_model(model, str(path))
    return WrittenGraph(nodes=len(g.nodes), weight_bytes=data.stat().st_size,
                        digests={} if by_reference else {data.name: writer.sha256()})
