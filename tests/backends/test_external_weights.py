"""Backends read the portable graph's weights through memory maps and copy untouched ones across in slices."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from qwdeploy.toolkit import external_data as external
from qwdeploy.backends.graph import Graph
from qwdeploy.backends.ort.artifact import save_model
from qwdeploy.toolkit.errors import CheckpointError
from qwdeploy.toolkit.layout import MODEL_FILE
from qwdeploy.toolkit.external_data import ExternalDataWriter


def test_weights_stay_on_disk_until_read_and_are_copied_exactly(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((300, 70)).astype(np.float32)  # [K, N]
    source, out = tmp_path / "portable", tmp_path / "out"
    source.mkdir(), out.mkdir()
    with open(source / "weights.bin", "wb") as data:
        tensor = ExternalDataWriter(data, "weights.bin").write("W", w.shape, TensorProto.FLOAT, [w[:100], w[100:]])
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="/mm")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 300])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [tensor])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source / MODEL_FILE))

    g = Graph(onnx.load(str(source / MODEL_FILE), load_external_data=False), source)
    read = g.const("W")
    assert isinstance(read, np.memmap) and np.array_equal(read, w)
    g.add_const("extra", rng.standard_normal((64, 64)).astype(np.float32))  # a new weight, held in memory
    monkeypatch.setattr(external, "SLICE_BYTES", 4096)  # several slices per tensor
    save_model(g.commit(), out, source)

    saved = onnx.load(str(out / MODEL_FILE))
    arrays = {t.name: numpy_helper.to_array(t) for t in saved.graph.initializer}
    assert np.array_equal(arrays["W"], w) and np.array_equal(arrays["extra"], g.const("extra"))
    x = rng.standard_normal((2, 300)).astype(np.float32)
    y = ort.InferenceSession(str(out / MODEL_FILE), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-4)


def test_large_new_weights_wait_in_the_spill_file_and_are_written_exactly(tmp_path):
    """A build's packed and quantized weights go to a scratch file as they are made (the model in memory
    only references them), are read back through a memory map, and reach the artifact byte for byte."""
    from qwdeploy.backends.graph import SPILL_BYTES

    rng = np.random.default_rng(6)
    source, out, scratch = tmp_path / "portable", tmp_path / "out", tmp_path / "scratch"
    for folder in (source, out, scratch):
        folder.mkdir()
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="/mm")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((512, 8), np.float32), "W")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source / MODEL_FILE))
    big = rng.standard_normal((512, SPILL_BYTES // 2048 + 1)).astype(np.float32)  # just over SPILL_BYTES
    small = rng.standard_normal((4, 4)).astype(np.float32)
    with open(scratch / "spill.data", "wb") as spill:
        g = Graph(onnx.load(str(source / MODEL_FILE)), source,
                  ExternalDataWriter(spill, str(scratch / "spill.data"), digest=False))
        before = g.model.ByteSize()
        big_name = g.add_const("big", big)
        assert g.model.ByteSize() - before < 1024  # the model holds a reference, not the bytes
        small_name = g.add_const("small", small)
        kept = {t.name: t for t in g.model.graph.initializer}
        assert external.is_external(kept[big_name]) and not external.is_external(kept[small_name])
        assert np.array_equal(g.const(big_name), big) and np.array_equal(g.const(small_name), small)
        g.replace([g.producer["y"]], [g.make("MatMul", ["x", big_name], ["y"], "/mm")])
        save_model(g.commit(), out, source)
    stored = {t.name: t for t in onnx.load(str(out / MODEL_FILE), load_external_data=False).graph.initializer}
    location = {e.key: e.value for e in stored[big_name].external_data}["location"]
    assert location == "model.onnx.data"  # the artifact never points at the scratch file
    saved = onnx.load(str(out / MODEL_FILE))
    arrays = {t.name: numpy_helper.to_array(t) for t in saved.graph.initializer}
    assert np.array_equal(arrays[big_name], big)


def test_a_constant_given_in_rows_spills_as_they_come_and_a_short_one_is_refused(tmp_path):
    """Graph.add_rows: a large constant made slice by slice goes to the spill file slice by slice (the quantizer's
    codes, row tiles) and reads back whole; a small one stays in the model; rows that do not add up to the
    declared shape are an error, not a tensor whose bytes belong to the next one."""
    from qwdeploy.backends.graph import SPILL_BYTES

    rng = np.random.default_rng(12)
    big = rng.integers(0, 256, (SPILL_BYTES // 1000 + 1, 10, 100), dtype=np.uint8)
    small = rng.standard_normal((3, 5)).astype(np.float32)
    graph = helper.make_graph([], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with open(tmp_path / "spill.data", "wb") as spill:
        g = Graph(helper.make_model(graph), tmp_path, ExternalDataWriter(spill, str(tmp_path / "spill.data"), False))
        made = []

        def rows(array: np.ndarray, step: int):
            for start in range(0, len(array), step):
                made.append(start)
                yield array[start:start + step]

        big_name = g.add_rows("big", big.shape, np.uint8, rows(big, 300))
        small_name = g.add_rows("small", small.shape, np.float32, rows(small, 2))
        kept = {t.name: t for t in g.model.graph.initializer}
        assert external.is_external(kept[big_name]) and not external.is_external(kept[small_name])
        assert np.array_equal(g.const(big_name), big) and np.array_equal(g.const(small_name), small)
        assert made == [*range(0, len(big), 300), 0, 2]
        with pytest.raises(ValueError, match="bytes written"):
            g.add_rows("short", big.shape, np.uint8, rows(big[:-1], 300))


def test_a_view_shares_its_sources_bytes_in_the_artifact(tmp_path):
    """Graph.add_view (how the int4 embedding lookup reads the tied LM head's table in another shape): a
    second initializer over the same bytes, stored once, counted once, and both shapes compute."""
    from qwdeploy.backends.graph import SPILL_BYTES
    from qwdeploy.toolkit.runtimes.ort.facts import read_graph

    rng = np.random.default_rng(7)
    source, out, scratch = tmp_path / "portable", tmp_path / "out", tmp_path / "scratch"
    for folder in (source, out, scratch):
        folder.mkdir()
    rows, cols = 64, SPILL_BYTES // 256 + 64  # [K, N] float32, just over SPILL_BYTES
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows]),
                                        helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source / MODEL_FILE))
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    with open(scratch / "spill.data", "wb") as spill:
        g = Graph(onnx.load(str(source / MODEL_FILE)), source,
                  ExternalDataWriter(spill, str(scratch / "spill.data"), digest=False))
        name = g.add_const("W", w)
        view = g.add_view("W.pairs", name, (rows * 2, cols // 2))
        g.append(g.make("MatMul", ["x", name], ["y"], "/mm"), g.make("Gather", [view, "ids"], ["rows"], "/gather"))
        model = g.commit()
        model.graph.output.append(helper.make_tensor_value_info("rows", TensorProto.FLOAT, None))
        save_model(model, out, source)
    stored = {t.name: {e.key: e.value for e in t.external_data}
              for t in onnx.load(str(out / MODEL_FILE), load_external_data=False).graph.initializer}
    assert stored[name] == stored[view]  # one location, offset and length
    assert (out / "model.onnx.data").stat().st_size < 1.01 * w.nbytes
    assert read_graph(out).weight_bytes == w.nbytes
    x, ids = rng.standard_normal((1, rows)).astype(np.float32), np.array([0, 5, 127])
    y, picked = ort.InferenceSession(str(out / MODEL_FILE), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "ids": ids})
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(picked, w.reshape(rows * 2, cols // 2)[ids])


def test_shared_storage_tells_a_view_from_a_copy(tmp_path):
    """What row_tiles asks before re-laying a weight: a view and its source are one set of stored bytes (a tied
    LM head and the embedding table), a copy of the same values is its own."""
    from qwdeploy.backends.graph import SPILL_BYTES

    rows, cols = 64, SPILL_BYTES // 256 + 64
    w = np.random.default_rng(3).standard_normal((rows, cols)).astype(np.float32)
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])])
    with open(tmp_path / "spill.data", "wb") as spill:
        g = Graph(helper.make_model(graph), tmp_path, ExternalDataWriter(spill, str(tmp_path / "spill.data"),
                                                                          digest=False))
        source = g.add_const("W", w)
        view = g.add_view("W.pairs", source, (rows * 2, cols // 2))
        copy = g.add_const("W.copy", w.copy())
        g.append(g.make("MatMul", ["x", source], ["y"], "/mm"), g.make("Identity", [view], ["v"], "/view"),
                 g.make("Identity", [copy], ["c"], "/copy"))
        assert g.shared_storage() == {source, view}


def _stored(tmp_path, array: np.ndarray, dtype: str):
    """`array` written as the only tensor of a safetensors file; its span."""
    from qwdeploy.toolkit.safetensors_io import DTYPES, SafetensorsFile, TensorPlan, write_safetensors

    path = tmp_path / f"{dtype}.safetensors"
    stored = array.astype(DTYPES[dtype])
    write_safetensors(path, [TensorPlan("w", stored.dtype, stored.shape)], [stored])
    return SafetensorsFile(path).span("w"), stored


@pytest.mark.parametrize("dtype", ["BF16", "F16", "F32"])
@pytest.mark.parametrize("shape", [(37, 19), (1, 300), (130, 4097)])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_reference_reads_as_its_stored_tensor_cast_and_transposed(tmp_path, monkeypatch, dtype, shape, transposed):
    """What a --target export's portable graph holds instead of a float32 copy: read whole (a pass) or in slices
    (the writer), a reference gives exactly the stored values cast, in the transposed shape."""
    monkeypatch.setattr(external, "SLICE_BYTES", 4096)  # many row blocks, a block's rows not a divisor
    span, stored = _stored(tmp_path, np.random.default_rng(4).standard_normal(shape), dtype)
    tensor = external.reference("w", TensorProto.FLOAT, span, transposed)
    want = stored.astype(np.float32).T if transposed else stored.astype(np.float32)
    assert tuple(tensor.dims) == want.shape
    array = external.external_array(tensor, tmp_path / "elsewhere")  # the location is absolute
    assert array.dtype == np.float32 and np.array_equal(array, want)
    blocks = list(external.external_rows(tensor, tmp_path, step=7))
    assert {len(b) for b in blocks[:-1]} <= {7} and np.array_equal(np.concatenate(blocks), want)


def test_references_to_the_same_bytes_read_another_way_are_not_one_tensor(tmp_path):
    span, _ = _stored(tmp_path, np.random.default_rng(5).standard_normal((8, 64)), "BF16")
    plain, flipped = (external.reference("w", TensorProto.FLOAT, span, t) for t in (False, True))
    assert external.external_key(plain, tmp_path) == external.external_key(external.renamed(plain, "v", (64, 8)),
                                                                           tmp_path)
    assert external.external_key(plain, tmp_path) != external.external_key(flipped, tmp_path)


@pytest.mark.parametrize("transposed", [False, True])
def test_a_reference_to_a_non_finite_value_is_refused_by_name_and_stored_position(tmp_path, transposed):
    weights = np.random.default_rng(6).standard_normal((40, 24))
    weights[33, 5] = np.inf
    span, _ = _stored(tmp_path, weights, "F32")
    tensor = external.reference("w", TensorProto.FLOAT16, span, transposed)  # the cast overflows nowhere else
    for read in (lambda: external.external_array(tensor, tmp_path), lambda: list(external.external_rows(tensor,
                                                                                                        tmp_path))):
        with pytest.raises(CheckpointError, match=r"tensor 'w' holds a NaN or Inf at \[33, 5\]") as caught:
            read()
        assert caught.value.path == span.file


def _qkv_references(tmp_path, rng, k: int) -> tuple[dict[str, np.ndarray], list[TensorProto]]:
    """q, k and v weights ([N, K] bf16, as a checkpoint holds them) in a safetensors file, and float references
    that read them transposed ([K, N], as the portable graph's MatMuls do)."""
    from qwdeploy.toolkit.safetensors_io import SafetensorsFile, TensorPlan, write_safetensors
    import ml_dtypes

    stored = {name: rng.standard_normal((rows, k)).astype(ml_dtypes.bfloat16) for name, rows in (("q", 40), ("k", 16),
                                                                                                  ("v", 24))}
    path = tmp_path / "model.safetensors"
    write_safetensors(path, [TensorPlan(n, a.dtype, a.shape) for n, a in stored.items()], list(stored.values()))
    spans = SafetensorsFile(path)
    return stored, [external.reference(n, TensorProto.FLOAT, spans.span(n), transposed=True) for n in stored]


def test_a_graph_reads_references_cast_or_as_stored_and_joins_them_as_rows(tmp_path):
    """Graph.const of references: cast by default, as stored (bf16, a memory map) for the quantizer; packed
    projections (add_concat along the output axis) of transposed references read the same either way."""
    import ml_dtypes

    stored, tensors = _qkv_references(tmp_path, np.random.default_rng(8), 48)
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], tensors)
    g = Graph(helper.make_model(graph), tmp_path)
    packed = g.add_concat("qkv", list(stored), axis=1)  # [K, Nq + Nk + Nv]
    want = np.concatenate([a.astype(np.float32).T for a in stored.values()], axis=1)
    cast, as_stored = g.const(packed), g.const(packed, stored=True)
    assert cast.dtype == np.float32 and as_stored.dtype == ml_dtypes.bfloat16
    assert np.array_equal(cast, want) and np.array_equal(as_stored.astype(np.float32), want)
    assert cast.T.flags.c_contiguous  # rows of [N, K], as the quantizer reads them
    assert g.is_float(packed) and g.const("k", stored=True).base is not None  # a view of the map, not a copy
    blocks = g.row_blocks(packed)  # [N, K] row blocks of the packed weight: its parts as stored, not joined
    assert [b.shape for b in blocks] == [a.shape for a in stored.values()] and all(b.base is not None for b in blocks)
    assert np.array_equal(np.concatenate(blocks).astype(np.float32).T, want) and g.shape(packed) == want.shape


def _resident() -> int:
    import mmap

    return int(Path("/proc/self/statm").read_text().split()[1]) * mmap.PAGESIZE


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads resident memory from Linux's /proc")
def test_dropped_pages_leave_resident_memory_and_read_back_the_same(tmp_path):
    """What keeps a quantizing build's peak near a slice of the largest weight rather than all of it."""
    import mmap

    w = np.random.default_rng(10).standard_normal((2048, 4096)).astype(np.float32)  # 32 MiB
    span, _ = _stored(tmp_path, w, "F32")
    array = external.external_array(external.reference("w", TensorProto.FLOAT, span, False), tmp_path, stored=True)
    total = float(array.sum(dtype=np.float64))  # every page read in
    before = _resident()
    for start in range(0, len(array), 100):  # slices that do not end on page boundaries
        external.drop_pages(array[start:start + 100])
    assert before - _resident() > 0.9 * w.nbytes
    assert float(array.sum(dtype=np.float64)) == total and np.array_equal(array, w)
    external.drop_pages(w[:10])  # not a map: left alone
    scratch = mmap.mmap(-1, 4 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # the advice zeroes it
    written = np.frombuffer(scratch, np.uint8)
    written[:] = 7
    external.drop_pages(written)
    assert (written == 7).all()


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="reads resident memory from Linux's /proc")
def test_a_transposed_tensor_is_read_a_band_of_stored_rows_at_a_time(tmp_path, monkeypatch):
    """Each row block of a transposed tensor (a MatMul weight, an untied LM head) reads every stored row: the
    reader lets each band of them go once copied, so resident memory follows a band and a block, not the tensor
    (which it held whole: 1.09 GB for a 7B's head)."""
    monkeypatch.setattr(external, "SLICE_BYTES", 1 << 20)
    span, stored = _stored(tmp_path, np.random.default_rng(11).standard_normal((2048, 4096)), "F32")  # 32 MiB
    tensor = external.reference("w", TensorProto.FLOAT, span, True)  # read as [4096, 2048]
    before, peak, start = _resident(), 0, 0
    for block in external.external_rows(tensor, tmp_path):
        peak = max(peak, _resident() - before)
        assert np.array_equal(block, stored.T[start:start + len(block)])
        start += len(block)
    # A block (4 slices of float32), a band of stored rows and require_finite's mask: 6 MiB at most, where
    # holding the tensor mapped is 32 MiB and more.
    assert start == 4096 and peak < stored.nbytes / 4


def test_a_deferred_packed_weight_is_made_as_the_artifact_is_written(tmp_path, monkeypatch):
    """commit(deferred=True): a packed weight (add_concat of transposed bf16 references) is listed without data
    and made block by block by the artifact writer, never stored in the spill file; its parts leave the model;
    the artifact holds exactly the concatenation and ONNX Runtime computes with it."""
    rng = np.random.default_rng(13)
    stored, tensors = _qkv_references(tmp_path, rng, 96)
    node = helper.make_node("MatMul", ["x", "q"], ["y"], name="/mm")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 96])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    monkeypatch.setattr(external, "SLICE_BYTES", 4096)  # rows of 320 bytes: many blocks per weight
    out = tmp_path / "out"
    out.mkdir()
    with open(tmp_path / "spill.data", "wb") as spill:
        g = Graph(model, tmp_path, ExternalDataWriter(spill, str(tmp_path / "spill.data"), digest=False))
        packed = g.add_concat("qkv", list(stored), axis=1)  # [K, Nq + Nk + Nv]
        g.replace([g.producer["y"]], [g.make("MatMul", ["x", packed], ["y"], "/mm")])
        committed = g.commit(deferred=True)
        listed = {t.name: t for t in committed.graph.initializer}
        assert list(listed) == [packed] and not external.is_external(listed[packed]) and not listed[packed].raw_data
        save_model(committed, out, tmp_path, g.made_rows)
    assert (tmp_path / "spill.data").stat().st_size == 0
    want = np.concatenate([a.astype(np.float32).T for a in stored.values()], axis=1)
    saved = {t.name: numpy_helper.to_array(t, str(out)) for t in onnx.load(str(out / MODEL_FILE),
                                                                          load_external_data=False).graph.initializer}
    assert list(saved) == [packed] and np.array_equal(saved[packed], want)
    x = rng.standard_normal((2, 96)).astype(np.float32)
    y = ort.InferenceSession(str(out / MODEL_FILE), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ want, rtol=1e-5, atol=1e-4)
