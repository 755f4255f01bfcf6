"""row_tiles (backends/cpu/row_tiles.py): a CPU int4 export lays QuantLinear and QuantSwiGLU codes out in row
tiles where the rows are whole 64-byte chunks, keeps row order elsewhere (rows of odd lengths; a tied LM head
whose stored bytes the embedding lookup also reads), and computes what the same graph computes in row order."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qwdeploy.backends.cpu import row_tiles
from qwdeploy.backends.graph import Graph
from qwdeploy.kernels.quantize import ROW_TILE, tile_rows, untile_rows
from qwdeploy.toolkit.external_data import ExternalDataWriter

from backend_helpers import assert_same_logits_as

QUANT_OPS = ("QuantLinear", "QuantSwiGLU")


def _row_tiles(model: onnx.ModelProto) -> dict[str, int]:
    return {n.name: helper.get_attribute_value(next(a for a in n.attribute if a.name == "row_tile"))
            for n in model.graph.node if n.op_type in QUANT_OPS}


def test_whole_chunk_rows_are_tiled_and_compute_the_same(exported, tmp_path, kernel_library):
    # Blocks of 128: the tiny shapes' rows (64 and 160 columns) become 1 and 2 blocks of 64 bytes.
    folder = exported("qwen2", target="cpu", quant="int4", block_size=128, mixed="false")
    model = onnx.load(str(folder / "model.onnx"))
    tiles = _row_tiles(model)
    # The tied LM head is tiled only where its bytes are its own (not a view of the embedding table's, as in a
    # file of external data): this tiny model's tensors are stored inline, as copies.
    assert len(tiles) == 2 * 4 + 1 and set(tiles.values()) == {ROW_TILE}
    # The same graph in row order: every tiled B back in its original layout, row_tile 1.
    initializers = {t.name: i for i, t in enumerate(model.graph.initializer)}
    for node in model.graph.node:
        if node.op_type in QUANT_OPS and tiles[node.name] == ROW_TILE:
            rows = helper.get_attribute_value(next(a for a in node.attribute if a.name == "N"))
            index = initializers[node.input[1]]
            tiled = numpy_helper.to_array(model.graph.initializer[index], base_dir=str(folder))
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(untile_rows(tiled, rows), node.input[1]))
            next(a for a in node.attribute if a.name == "row_tile").i = 1
    assert_same_logits_as(folder, model, tmp_path, kernel_library)


def test_rows_of_partial_chunks_keep_their_order(exported):
    # Blocks of 32: 64 columns are 32 bytes, 160 are 80; neither is whole 64-byte chunks (all int4: int8 rows of 64
    # columns would be).
    model = onnx.load(str(exported("qwen2", target="cpu", quant="int4", mixed="false") / "model.onnx"),
                      load_external_data=False)
    assert set(_row_tiles(model).values()) == {1}


@pytest.mark.parametrize("rows", [ROW_TILE * 37, ROW_TILE * 37 + 3, 5])
def test_codes_are_tiled_slice_by_slice_as_they_are_whole(tmp_path, monkeypatch, rows):
    """`tiled` reads a spilled weight's codes a slice of tiles at a time (the last slice and tile short) and
    writes exactly what tiling them whole gives."""
    monkeypatch.setattr("qwdeploy.toolkit.external_data.SLICE_BYTES", 3000)  # several slices of 4-row tiles
    monkeypatch.setattr("qwdeploy.backends.graph.SPILL_BYTES", 1024)
    codes = np.random.default_rng(rows).integers(0, 256, (rows, 4, 32), dtype=np.uint8)  # [rows, blocks, bytes]
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(codes, "B")])
    with open(tmp_path / "spill.data", "wb") as spill:
        g = Graph(helper.make_model(graph), tmp_path, ExternalDataWriter(spill, str(tmp_path / "spill.data"), False))
        spilled = g.add_const("B.spilled", codes)
        for source in ("B", spilled):
            assert np.array_equal(g.const(row_tiles.tiled(g, source)), tile_rows(codes))
