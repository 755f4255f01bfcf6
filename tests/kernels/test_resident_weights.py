"""QuantLinear and QuantSwiGLU with their weights as initializers in external data, as exports write them:
the kernels copy codes and scales into huge pages at creation (kernels/cpu/resident.h) and compute from
the copies, and the data file's pages they copied leave the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from kernel_cases import Case, assert_within, prefill_here, quant_matmul
from qwdeploy.kernels.build import Build
from qwdeploy.kernels.graphs import node_model
from qwdeploy.kernels.reference import REFERENCES
from qwdeploy.kernels.schemas import DOMAIN, DOMAIN_VERSION

WEIGHTS = ("B", "scales", "zero_points")
CHILD = Path(__file__).with_name("resident_child.py")
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
THP_ON = THP.is_file() and "[never]" not in THP.read_text()  # what the kernels check (kernels/cpu/resident.cc)


def _save(model: onnx.ModelProto, folder: Path, external: bool = True) -> Path:
    path = folder / "model.onnx"
    onnx.save(model, path, save_as_external_data=external, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    return path


def _with_initializers(case: Case, folder: Path, external: bool = True) -> Path:
    """The case's node with B, scales and zero points as initializers, in model.onnx.data or in the model."""
    model = onnx.load_from_string(node_model(case.op, case.inputs, case.attributes, outputs=case.outputs))
    graph = model.graph
    for name in WEIGHTS:
        graph.initializer.append(numpy_helper.from_array(case.inputs[name], name))
    kept = [i for i in graph.input if i.name not in WEIGHTS]
    del graph.input[:]
    graph.input.extend(kept)
    return _save(model, folder, external)


def _session(path: Path, library: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_apart(path: Path, library: Path, feeds: dict[str, np.ndarray], huge_pages: bool) -> tuple[list, int, int]:
    """One run in a fresh process with huge pages allowed or declined: the outputs, and the KiB of the data
    file mapped and resident there."""
    np.savez(path.parent / "feeds.npz", **feeds)
    env = {**os.environ, "QWDEPLOY_HUGE_PAGES": "1" if huge_pages else "0"}
    run = subprocess.run([sys.executable, str(CHILD), str(path), str(library), str(path.parent / "feeds.npz"),
                          str(path.parent / "out.npz")], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    size, rss = map(int, run.stdout.split())
    with np.load(path.parent / "out.npz") as out:
        return [out[f"arr_{i}"] for i in range(len(out.files))], size, rss


def _assert_resident(rss: int, data_kib: int, huge_pages: bool, copied: str) -> None:
    """Where huge pages are allowed and on, the copied weights' mapped pages left (`copied` says which read
    would have brought them back); declined or off, the kernels read the mapping and its pages stayed."""
    if huge_pages and THP_ON:
        assert rss < data_kib // 8, copied
    else:
        assert rss > data_kib // 2, "the kernels copied their weights with huge pages declined or off"


@pytest.mark.parametrize(("op", "lead", "K", "N", "external"), [
    ("QuantLinear", (1,), 900, 37, True), ("QuantLinear", (20,), 300, 600, True), ("QuantSwiGLU", (1,), 160, 300, True),
    ("QuantSwiGLU", (19,), 160, 300, True), ("QuantLinear", (3,), 300, 600, False)])
def test_initializer_weights_meet_the_reference_from_their_copies(op: str, lead: tuple[int, ...], K: int, N: int,
                                                                 external: bool, host_build: Build, tmp_path: Path):
    """Decode and prefill, zero points, float16 scales; two sessions of one file, each with its copies, the
    second still right after the first is gone. Weights inside the model (no file to drop them to) are
    read where ONNX Runtime holds them."""
    case = quant_matmul(np.random.default_rng(K + N), op, lead, K, N, 4, 32, False, 4, half=True)
    path = _with_initializers(case, tmp_path, external)
    feeds = {n: v for n, v in case.inputs.items() if v is not None and n not in WEIGHTS}
    prefill = prefill_here()
    first, second = _session(path, host_build.library), _session(path, host_build.library)
    for sess in (first, second, first):
        for got, want, bound in zip(sess.run(None, feeds), case.expected(prefill), case.bounds(prefill), strict=True):
            assert_within(got, want, bound, case.name)
    del first
    for got, want, bound in zip(second.run(None, feeds), case.expected(prefill), case.bounds(prefill), strict=True):
        assert_within(got, want, bound, case.name)


@pytest.mark.parametrize("huge_pages", [True, False], ids=["allowed", "declined"])
def test_copied_weights_leave_the_mapped_file(huge_pages: bool, host_build: Build, tmp_path: Path):
    """Where huge pages are on, the data file's pages the kernels copied are dropped: resident memory holds the
    weights once, not the mapping and the copy. Declined (QWDEPLOY_HUGE_PAGES=0) or off (`never`), the kernels
    read the mapping, whose pages then stay."""
    case = quant_matmul(np.random.default_rng(0), "QuantLinear", (4,), 900, 2048, 4, 32, False, 4)
    path = _with_initializers(case, tmp_path)
    data_kib = (tmp_path / "model.onnx.data").stat().st_size // 1024
    assert data_kib > 900  # mostly whole pages of codes
    feeds = {n: v for n, v in case.inputs.items() if v is not None and n not in WEIGHTS}
    outputs, size, rss = _run_apart(path, host_build.library, feeds, huge_pages)
    for got, want, bound in zip(outputs, case.expected(), case.bounds(), strict=True):
        assert_within(got, want, bound, case.name)
    assert size >= data_kib  # ONNX Runtime maps the file
    _assert_resident(rss, data_kib, huge_pages, "the mapped weights stayed beside the copies")


@pytest.mark.parametrize("huge_pages", [True, False], ids=["allowed", "declined"])
def test_a_tied_table_is_copied_once_and_gathered_from_the_copy(huge_pages: bool, host_build: Build, tmp_path: Path):
    """The LM head (QuantLinear) and the embedding lookup (QuantGather) read one table: the lookup takes the
    head's copy, so its rows never fault the mapped table back in."""
    rng = np.random.default_rng(1)
    head = quant_matmul(rng, "QuantLinear", (2,), 896, 1024, 4, 32, True, 4, half=True)
    indices = rng.integers(0, 1024, size=(5,)).astype(np.int64)
    attrs = {k: head.attributes[k] for k in ("K", "N", "bits", "block_size", "row_tile")}
    nodes = [helper.make_node("QuantLinear", ["X", "B", "scales"], ["Y"], domain=DOMAIN, **head.attributes),
             helper.make_node("QuantGather", ["B", "indices", "scales"], ["rows"], domain=DOMAIN, **attrs)]
    graph = helper.make_graph(
        nodes, "tied", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [2, 896]),
                        helper.make_tensor_value_info("indices", onnx.TensorProto.INT64, [5])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("Y", "rows")],
        [numpy_helper.from_array(head.inputs[n], n) for n in ("B", "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])
    model.ir_version = 8
    path = _save(model, tmp_path)
    data_kib = (tmp_path / "model.onnx.data").stat().st_size // 1024
    (y, rows), _, rss = _run_apart(path, host_build.library, {"X": head.inputs["X"], "indices": indices}, huge_pages)
    assert_within(y, head.expected()[0], head.bounds()[0], head.name)
    table = REFERENCES["QuantGather"](head.inputs["B"], indices, head.inputs["scales"], **attrs)
    np.testing.assert_array_equal(rows, table)
    _assert_resident(rss, data_kib, huge_pages, "the lookup read the mapped table")


def test_a_closed_sessions_copies_are_not_handed_to_a_later_model(host_build: Build, tmp_path: Path):
    """Copies of several sessions share an arena, which lives while any of them is held. Models opened one
    after another, each mapped where the closed one was with tensors of the same sizes, each get their own
    weights, not a closed session's copies."""
    keeper = tmp_path / "keeper"
    keeper.mkdir()
    kept = _session(_with_initializers(quant_matmul(np.random.default_rng(7), "QuantLinear", (1,), 160, 64, 4, 32,
                                                    False, 4), keeper), host_build.library)
    for seed in range(4):
        case = quant_matmul(np.random.default_rng(100 + seed), "QuantLinear", (2,), 300, 600, 4, 32, False, 4,
                            half=True)
        folder = tmp_path / f"model{seed}"
        folder.mkdir()
        sess = _session(_with_initializers(case, folder), host_build.library)
        feeds = {n: v for n, v in case.inputs.items() if v is not None and n not in WEIGHTS}
        for got, want, bound in zip(sess.run(None, feeds), case.expected(), case.bounds(), strict=True):
            assert_within(got, want, bound, f"{case.name}, model {seed}")
        del sess
    del kept
