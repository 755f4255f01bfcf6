"""The CANN op-support preflight and llama.cpp's CANN placements, on the tiny checkpoints' real exports and on
hand-made graphs. Expectations are the facts the table cites (backends/cann/support.py, gguf_support.py), written
out here again rather than read from the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from qwdeploy.backends.cann.gguf_support import npu_gguf_type, type_uses
from qwdeploy.backends.cann.support import Placement, preflight, release, require_supported
from qwdeploy.exporters.gguf.exporter import export as export_gguf
from qwdeploy.exporters.gguf.reader import GGUFFile
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import QwdeployError
from qwdeploy.toolkit.layout import MODEL_FILE
from qwdeploy.toolkit.profiles import load_profile

ARCHS = ("qwen2", "qwen3", "qwen2moe", "qwen3moe")
MOE = {"qwen2moe", "qwen3moe"}

# Why CANN 8.0's pages do not vouch for some of the portable graph's nodes at opset 13 (the Ascend profiles').
EXPLAINED = {
    "Unsqueeze": "axes became an input at opset 13; the page documents opsets 8-12 (the parser registers 13-18)",
    "LessOrEqual": "the causal mask compares int64 positions; the page documents float16 and float",
    "Sub": "int64 length arithmetic; the page documents float16, float and int32",
    "Reshape": "float32 data; the page lists every type but float32",
    "Slice": "qwen2 slices a 1-D shape vector; the page excludes 1-D data",
    "NonZero": "the MoE routing mask is bool; the page documents numeric inputs only",
}
# At the exporter's default opset 17, ops documented only up to a lower opset are refused.
REFUSED_AT_17 = {"ReduceMean", "Sub"}  # ReduceMean to 16, Sub to 15
REFUSED_AT_17_MOE = {"ConstantOfShape"}  # to 16


def _expected_unverified(arch: str) -> set[str]:
    ops = {"Unsqueeze", "LessOrEqual", "Sub", "Reshape"}
    return ops | ({"Slice"} if arch == "qwen2" else set()) | ({"NonZero"} if arch in MOE else set())


def _load(folder: Path) -> onnx.ModelProto:
    return onnx.load(str(folder / MODEL_FILE), load_external_data=False)


def _ops(findings, placement: Placement) -> set[str]:
    return {f.op_type for f in findings if f.placement is placement}


@pytest.mark.parametrize("arch", ARCHS)
def test_the_ascend_profiles_portable_graphs_pass_the_cann_80_preflight(exported, arch):
    model = _load(exported(arch, None, "f16", profile="ascend-910b"))
    assert model.opset_import[0].version == 13
    findings = preflight(model, "8.0")
    assert len(findings) == len(model.graph.node)
    assert _ops(findings, Placement.REFUSED) == set()
    assert _ops(findings, Placement.UNVERIFIED) == _expected_unverified(arch)
    assert _ops(findings, Placement.UNVERIFIED) <= set(EXPLAINED)
    assert all(f.reason and f.cann_version == "8.0" for f in findings)
    require_supported(model, "8.0")  # unverified nodes pass; only a refused one raises


@pytest.mark.parametrize("arch", ARCHS)
def test_the_default_opset_17_graphs_are_refused_for_the_ops_documented_lower(exported, arch):
    folder = exported(arch, None, "f16")
    model = _load(folder)
    findings = preflight(model, "8.0")
    refused = [f for f in findings if f.placement is Placement.REFUSED]
    assert {f.op_type for f in refused} == REFUSED_AT_17 | (REFUSED_AT_17_MOE if arch in MOE else set())
    assert all("opsets" in f.reason and "onnx_opset 13" in f.rewrite for f in refused)
    with pytest.raises(QwdeployError) as error:
        require_supported(model, "8.0", folder)
    message = str(error.value)
    assert refused[0].op_type in message and refused[0].node in message and "CANN 8.0" in message
    assert str(folder) in message and "\n" not in message


# --- hand-made graphs ---------------------------------------------------------------------------------------
def _model(node: onnx.NodeProto, inputs: list[tuple[str, int, list[int]]], opset: int,
           constants: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in node.output],
        [numpy_helper.from_array(v, k) for k, v in (constants or {}).items()])
    domains = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(node.domain, 1)] if node.domain else [])
    return helper.make_model(graph, opset_imports=domains)


F16, F32, I64 = TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.INT64


def _only(model: onnx.ModelProto, version: str = "8.0"):
    (finding,) = preflight(model, version)
    return finding


def test_an_op_outside_the_table_is_refused_by_name(tmp_path):
    model = _model(helper.make_node("Trilu", ["x"], ["y"], name="/mask/Trilu"), [("x", F16, [4, 4])], 14)
    finding = _only(model)
    assert finding.placement is Placement.REFUSED and "not in qwdeploy's CANN op table" in finding.reason
    with pytest.raises(QwdeployError, match=r"CANN 8\.0's ATC would refuse Trilu node '/mask/Trilu'"):
        require_supported(model, "8.0", tmp_path)


def test_an_opset_above_the_documented_range_is_refused_and_the_same_node_below_it_runs():
    node = helper.make_node("Sub", ["a", "b"], ["c"], name="/sub")
    inputs = [("a", F16, [2, 3]), ("b", F16, [2, 3])]
    above = _only(_model(node, inputs, 16))  # the Sub page: opsets 8-15
    assert above.placement is Placement.REFUSED and "8-15" in above.reason and "onnx_opset 13" in above.rewrite
    assert _only(_model(node, inputs, 15)).placement is Placement.NPU


def test_a_contrib_op_is_refused():
    node = helper.make_node("MatMulNBits", ["a", "b"], ["c"], name="/q", domain="com.microsoft")
    finding = _only(_model(node, [("a", F16, [2, 8]), ("b", TensorProto.UINT8, [8, 1, 4])], 17))
    assert finding.placement is Placement.REFUSED and "com.microsoft" in finding.reason


@pytest.mark.parametrize("node, inputs, opset, constants, placement, words", [
    # MatMul page: "仅支持1-6维输入"
    (helper.make_node("MatMul", ["a", "b"], ["c"], name="/mm"), [("a", F16, [1] * 5 + [2, 3]), ("b", F16, [3, 4])],
     13, None, Placement.REFUSED, "1-6-D"),
    (helper.make_node("MatMul", ["a", "b"], ["c"], name="/mm"), [("a", F16, [1, 1, 1, 2, 3]), ("b", F16, [3, 4])],
     13, None, Placement.NPU, "documented"),
    # MatMul page: float16 inputs only
    (helper.make_node("MatMul", ["a", "b"], ["c"], name="/mm"), [("a", F32, [2, 3]), ("b", F32, [3, 4])],
     13, None, Placement.UNVERIFIED, "float input"),
    # Gemm page (8.0): C, alpha and beta are not supported yet
    (helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="/gemm"), [("a", F16, [2, 3]), ("b", F16, [3, 4]),
                                                                      ("c", F16, [4])],
     13, None, Placement.REFUSED, "C input"),
    # Gather page: negative indices are not supported
    (helper.make_node("Gather", ["x", "i"], ["y"], name="/g", axis=0), [("x", F16, [4, 2])], 13,
     {"i": np.array([-1], np.int64)}, Placement.REFUSED, "negative indices"),
    # Cast page: int64 is not among the documented outputs
    (helper.make_node("Cast", ["x"], ["y"], name="/c", to=TensorProto.INT64), [("x", F32, [4])], 13, None,
     Placement.UNVERIFIED, "Cast to int64"),
    # Unsqueeze page: opsets 8-12 (axes attribute); opset 13's axes input is only in the parser's source
    (helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="/u"), [("x", F16, [4])], 13,
     {"axes": np.array([0], np.int64)}, Placement.UNVERIFIED, "8-12"),
    (helper.make_node("Unsqueeze", ["x"], ["y"], name="/u", axes=[0]), [("x", F16, [4])], 12, None,
     Placement.NPU, "documented"),
    # NonZero: documented for numeric inputs; its kernel runs on the AI CPU
    (helper.make_node("NonZero", ["x"], ["y"], name="/nz"), [("x", TensorProto.UINT8, [4, 4])], 13, None,
     Placement.AICPU, "AI CPU"),
])
def test_the_pages_limits(node, inputs, opset, constants, placement, words):
    finding = _only(_model(node, inputs, opset, constants))
    assert finding.placement is placement and words in finding.reason, finding


def test_other_releases_use_their_own_ranges_and_leave_unchecked_pages_unverified():
    matmul = helper.make_node("MatMul", ["a", "b"], ["c"], name="/mm")
    add = helper.make_node("Add", ["a", "b"], ["c"], name="/add")
    inputs = [("a", F16, [2, 3]), ("b", F16, [3, 3])]
    assert _only(_model(matmul, inputs, 17), "7.0").placement is Placement.NPU  # CANN 7.0's MatMul page: 8-18
    unchecked = _only(_model(add, inputs, 17), "7.0")
    assert unchecked.placement is Placement.UNVERIFIED and "not checked" in unchecked.reason
    assert _only(_model(add, inputs, 19), "7.0").placement is Placement.REFUSED  # 7.0 documents opsets 9-18
    assert _only(_model(add, inputs, 17), "6.0").placement is Placement.REFUSED  # 6.0 documents opsets 9-13
    assert _only(_model(add, inputs, 13), "6.0").placement is Placement.NPU


def test_cann_versions_are_read_as_major_minor():
    assert release("8.0.RC2").version == release("8.0.0").version == "8.0"
    with pytest.raises(QwdeployError, match="known: 6.0, 7.0, 8.0"):
        release("9.0")


# --- GGUF on Ascend -----------------------------------------------------------------------------------------
# llama.cpp's CANN backend (docs/backend/CANN.md, ggml-cann.cpp): weight types whose matmuls stay on the NPU.
NPU_MATMULS = {"ascend-910b": {"F32", "F16", "Q8_0", "Q4_0"}, "ascend-310p": {"F32", "F16"}, "ascend-310b": set()}
GGUF_QUANTS = ("f16", "q8_0", "q4_0", "q4_k_m")


@pytest.fixture(scope="module")
def gguf_files(make_checkpoint, tmp_path_factory) -> dict[str, tuple[Path, list[tuple[str, str]]]]:
    """quant → (file, export summary); f16 is the 310P profile's default, picked without --quant."""
    root, files = tmp_path_factory.mktemp("cann-gguf"), {}
    checkpoint = open_checkpoint(make_checkpoint("qwen3"))
    for quant in GGUF_QUANTS:
        request = ExportRequest(checkpoint, root / f"{quant}.gguf", quant=None if quant == "f16" else quant,
                                profile=load_profile("ascend-310p") if quant == "f16" else None, verify=False,
                                show_progress=False)
        result = export_gguf(request)
        files[quant] = (result.path, result.summary)
    return files


@pytest.mark.parametrize("profile", sorted(NPU_MATMULS))
@pytest.mark.parametrize("quant", GGUF_QUANTS)
def test_where_each_gguf_types_matmuls_run(gguf_files, quant, profile):
    path, _ = gguf_files[quant]
    uses = type_uses(GGUFFile(path), load_profile(profile))
    stored = {t.qtype.name for t in GGUFFile(path).tensors.values()}
    assert {u.qtype for u in uses} == stored
    for use in uses:
        if use.matrices:
            expected = Placement.NPU if use.qtype in NPU_MATMULS[profile] else Placement.CPU
            assert use.placement is expected, use
    bulk = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0"}.get(quant)
    if bulk:  # the type the file's large matrices have
        assert any(u.qtype == bulk and u.matrices for u in uses)
    else:  # K-quants (or what llama.cpp picks for rows too short for them) are never NPU types
        assert any(u.matrices and u.qtype not in NPU_MATMULS["ascend-910b"] for u in uses)


def test_each_ascend_profile_defaults_to_the_gguf_type_that_keeps_matmuls_on_its_npu(gguf_files):
    picks = {name: npu_gguf_type(load_profile(name)) for name in NPU_MATMULS}
    assert (picks["ascend-910b"].quant, picks["ascend-910b"].placement) == ("q8_0", Placement.NPU)
    assert (picks["ascend-310p"].quant, picks["ascend-310p"].placement) == ("f16", Placement.NPU)
    assert picks["ascend-310b"].placement is Placement.CPU and "310B" in picks["ascend-310b"].reason
    for name, pick in picks.items():
        assert load_profile(name).deploy.gguf_quant == pick.quant  # what `export --profile NAME` uses
    _, summary = gguf_files["f16"]
    assert ("type", "f16") in summary
    assert any(label == "matmuls" and "F16" in note and "310P" in note for label, note in summary)


# --- `qwdeploy backends check` -----------------------------------------------------------------------------
def _cli(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_backends_without_a_subcommand_still_lists_the_backends():
    result = _cli("backends")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("name") and "-O option" in result.output and "cann" in result.output


def test_check_an_onnx_folder(exported):
    result = _cli("backends", "check", exported("qwen3", None, "f16", profile="ascend-910b"), "--profile",
                  "ascend-310p")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()[2:-1]}
    assert rows["MatMul"][1] == "NPU" and rows["LessOrEqual"] == ["1", "unverified"]
    assert "refused" not in result.stdout and "CANN 8.0" in result.stdout

    refused = _cli("backends", "check", exported("qwen3", None, "f16"), "--profile", "ascend-310p")
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        "error: CANN 8.0's ATC would refuse 10 nodes (ReduceMean, Sub): see the rewrites above"]


def test_check_a_gguf_file(gguf_files):
    path, _ = gguf_files["q8_0"]
    result = _cli("backends", "check", path, "--profile", "ascend-310p")
    assert result.exit_code == 0, result.output
    q8 = next(line for line in result.stdout.splitlines() if line.startswith("Q8_0"))
    assert q8.split()[3] == "CPU" and "--quant f16" in result.stdout


@pytest.mark.parametrize("what, fragment", [
    ("missing", "no such file or directory"),
    ("checkpoint", "not a checkpoint"),
    ("corrupt", "not a readable ONNX model"),
    ("cpu-profile", "knows Ascend (CANN) devices only"),
])
def test_bad_input_is_one_line(make_checkpoint, tmp_path, what, fragment):
    artifact, profile = tmp_path / "nothing", "ascend-910b"
    if what == "checkpoint":
        artifact = make_checkpoint("qwen3")
    elif what in ("corrupt", "cpu-profile"):
        artifact = tmp_path / "onnx"
        artifact.mkdir()
        (artifact / MODEL_FILE).write_bytes(b"\x0f\x0f\x0f")
        profile = "x86-server" if what == "cpu-profile" else profile
    result = _cli("backends", "check", artifact, "--profile", profile)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], \
        result.output
