"""row_tiles (backends/cpu/row_tiles.py): a CPU int4 export lays QuantLinear and QuantSwiGLU codes out in row
tiles where the rows are whole 64-byte chunks, keeps row order elsewhere (rows of odd lengths; a tied LM head
whose stored bytes the embedding lookup also reads), and computes what the same graph computes in row order."""

import onnx
from onnx import helper, numpy_helper

from qwdeploy.kernels.quantize import ROW_TILE, untile_rows

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
