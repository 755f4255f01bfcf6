"""eval reads ONNX folders laid out the way the onnxruntime-genai model builder writes them: no position_ids
input (the graph derives positions from attention_mask) and a symbolic KV head size that genai_config.json
states. The folder here is our f32 export rewritten into that layout, so it must still compute transformers'
logits exactly (f32 bounds as in test_eval_cli)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.layout import GENAI_CONFIG, MODEL_FILE

POSITIONS = 160
HEAD_SIZE_PARAM = "kv_cache_dim"


def _positions_from_mask(graph: onnx.GraphProto) -> None:
    """position_ids = (cumsum(attention_mask) - 1)[:, -sequence_length:], as genai-built graphs compute them."""
    graph.input.remove(next(v for v in graph.input if v.name == "position_ids"))
    graph.initializer.extend([helper.make_tensor("g_axis", TensorProto.INT64, [], [1]),
                              helper.make_tensor("g_one", TensorProto.INT64, [], [1]),
                              helper.make_tensor("g_end", TensorProto.INT64, [1], [2**62]),
                              helper.make_tensor("g_axes", TensorProto.INT64, [1], [1])])
    nodes = [helper.make_node("CumSum", ["attention_mask", "g_axis"], ["g_cumsum"]),
             helper.make_node("Sub", ["g_cumsum", "g_one"], ["g_all_positions"]),  # [batch, total]
             helper.make_node("Shape", ["input_ids"], ["g_seq"], start=1, end=2),
             helper.make_node("Neg", ["g_seq"], ["g_start"]),
             helper.make_node("Slice", ["g_all_positions", "g_start", "g_end", "g_axes"], ["position_ids"])]
    for node in reversed(nodes):
        graph.node.insert(0, node)


def _genai_layout(ours: Path, out: Path) -> Path:
    out.mkdir()
    for path in ours.iterdir():
        if path.name not in (MODEL_FILE, "checksums.sha256"):
            shutil.copy(path, out / path.name)
    model = onnx.load(str(ours / MODEL_FILE), load_external_data=False)
    _positions_from_mask(model.graph)
    head_size = {v.type.tensor_type.shape.dim[3].dim_value for v in model.graph.input if v.name.startswith("past_")}
    for value in model.graph.input:
        if value.name.startswith("past_"):
            value.type.tensor_type.shape.dim[3].dim_param = HEAD_SIZE_PARAM
    onnx.save(model, str(out / MODEL_FILE))
    config = json.loads((out / GENAI_CONFIG).read_text())
    (size,) = head_size
    config["model"]["decoder"]["head_size"] = size
    (out / GENAI_CONFIG).write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def genai_folder(artifacts, tmp_path_factory) -> Path:
    return _genai_layout(artifacts("onnx_f32"), tmp_path_factory.mktemp("genai-layout") / "genai")


def test_a_genai_builder_layout_is_evaluated_like_our_own_graph(checkpoint, genai_folder, tmp_path):
    inputs = {v.name for v in onnx.load(str(genai_folder / MODEL_FILE), load_external_data=False).graph.input}
    assert "position_ids" not in inputs
    result = CliRunner().invoke(cli, ["eval", str(checkpoint), str(genai_folder), "--positions", str(POSITIONS),
                                      "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (doc,) = json.loads((tmp_path / "out" / "eval.json").read_text())["artifacts"]
    assert doc["positions"] == POSITIONS
    assert doc["agreement"]["kl_mean"] < 1e-5 and doc["agreement"]["top1"] == 1.0, doc["agreement"]


def test_a_kv_input_without_a_stated_head_size_is_one_line(checkpoint, genai_folder, tmp_path):
    broken = Path(shutil.copytree(genai_folder, tmp_path / "broken"))
    config = json.loads((broken / GENAI_CONFIG).read_text())
    del config["model"]["decoder"]["head_size"]
    (broken / GENAI_CONFIG).write_text(json.dumps(config))
    result = CliRunner().invoke(cli, ["eval", str(checkpoint), str(broken), "--positions", "16"])
    assert result.exit_code != 0
    assert "does not state its KV heads and head size" in result.output and "Traceback" not in result.output
