"""tied_table (backends/cpu/tied_table.py): where the embedding lookup and a tied LM head read one stored
int4/int8 table, the CPU export tiles it, moves the lookup onto QuantGather with the head's float16 scales, stores the
table once with no float32 scales, and computes what ONNX Runtime's GatherBlockQuantized and the untiled head
compute."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qwdeploy.backends import graph
from qwdeploy.backends.ort.quant import embedding
from qwdeploy.exporters.onnx.exporter import export
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.kernels.quantize import ROW_TILE, untile_rows
from qwdeploy.toolkit.checkpoint import open_checkpoint

from backend_helpers import assert_same_logits_as

MS = "com.microsoft"


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _export_with_views(make_checkpoint, out, monkeypatch):
    # A real model's int4 table is large enough to be quantized at all and written to the data file, where the
    # lookup's table is a view of the head's bytes; the tiny model's would stay float, or in memory as two copies.
    monkeypatch.setattr(embedding, "MIN_ROWS", 1)
    monkeypatch.setattr(graph, "SPILL_BYTES", 1024)
    # int8 in blocks of 64: the tiny shape's 64-column rows are one block of 64 bytes, a whole chunk for row
    # tiles, and the lookup takes the table's width in whole blocks.
    export(ExportRequest(open_checkpoint(make_checkpoint("qwen2")), out, quant="int8", target="cpu",
                         show_progress=False, verify=False, options={"block_size": 64}))
    return out


def test_a_tied_table_is_tiled_once_and_looked_up_by_quant_gather(make_checkpoint, tmp_path, monkeypatch,
                                                                  kernel_library):
    folder = _export_with_views(make_checkpoint, tmp_path / "int8", monkeypatch)
    model = onnx.load(str(folder / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "GatherBlockQuantized" not in ops and ops.count("QuantGather") == 1
    lookup = next(n for n in model.graph.node if n.op_type == "QuantGather")
    head = next(n for n in model.graph.node if n.op_type == "QuantLinear" and n.input[1] == lookup.input[0])
    assert _attrs(lookup)["row_tile"] == _attrs(head)["row_tile"] == ROW_TILE
    assert lookup.input[2] == head.input[2]  # one set of scales, float16
    initializers = {t.name: t for t in model.graph.initializer}
    assert initializers[lookup.input[2]].data_type == TensorProto.FLOAT16
    rows = _attrs(head)["N"]  # 64 columns in one block: a scale per row
    assert not [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and np.prod(t.dims) == rows]

    # The same model as before the pass: the head's codes back in row order, the lookup on GatherBlockQuantized
    # with float32 scales.
    attrs = _attrs(lookup)
    rows = attrs["N"]
    tiled = numpy_helper.to_array(initializers[lookup.input[0]], base_dir=str(folder))
    codes = untile_rows(tiled, rows)
    scales = numpy_helper.to_array(initializers[lookup.input[2]], base_dir=str(folder)).astype(np.float32)
    model.graph.initializer.extend([numpy_helper.from_array(codes, "codes"),
                                    numpy_helper.from_array(codes.reshape(rows, -1), "codes.rows"),
                                    numpy_helper.from_array(scales, "scales.f32")])
    head.input[1] = "codes"
    next(a for a in head.attribute if a.name == "row_tile").i = 1
    original = helper.make_node("GatherBlockQuantized", ["codes.rows", lookup.input[1], "scales.f32"],
                                list(lookup.output), "lookup", domain=MS, gather_axis=0, quantize_axis=1,
                                block_size=attrs["block_size"], bits=attrs["bits"])
    index = list(model.graph.node).index(lookup)
    model.graph.node.remove(lookup)
    model.graph.node.insert(index, original)
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    (tmp_path / "untiled").mkdir()
    assert_same_logits_as(folder, model, tmp_path / "untiled", kernel_library)
