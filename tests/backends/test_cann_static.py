"""The cann backend's static decoder, run here in ONNX Runtime on the CPU: fixed KV buffers written at each
token's position must compute what the dynamic portable graph computes, prefill padded into a gear included.

Bounds: the static graph is the portable f16 graph with the cache written by a one-hot MatMul (exact) and a
mask over more, fully masked, slots (exp underflows to exactly 0); what may differ is the order fp16 sums
run in over the longer buffers. So both agree within a few fp16 ulps at the logits' magnitude (the logits
leave an fp16 LM head): 4 ulps, where measured 1 to 2.3 (max |Δ| 0.008-0.018 on logits up to 17, ulp
0.0078); a slot written in the wrong place moves logits by O(1). Against transformers (fp32), the f16 bounds
every f16 artifact meets (tests/parity: top-1 >= 95%, mean KL <= 2e-5).
"""

import json

import numpy as np
import onnx
import pytest

from qwdeploy.toolkit.metrics import agreement
from qwdeploy.toolkit.reference import transformers_logits
from qwdeploy.toolkit.runtimes.ort.session import OrtSession

from backend_helpers import PROMPT

CONTEXT, GEAR, DECODE = 64, 16, 8


@pytest.fixture(scope="module")
def static(exported):
    def get(arch):
        return exported(arch, "cann", None, profile="ascend-910b", context=str(CONTEXT), gears=f"1,{GEAR}")
    return get


def _run(folder, tokens: list[int], pad_to: int | None = None) -> np.ndarray:
    """Logits [len(tokens), vocab]: the prompt in one call (padded into a gear when asked), then one token a call."""
    session = OrtSession(folder, "CPUExecutionProvider", threads=1, options={})
    cache = session.new_cache(1)
    prompt, rest = tokens[:len(PROMPT)], tokens[len(PROMPT):]
    padded = prompt + [0] * ((pad_to or len(prompt)) - len(prompt))  # pad tokens sit past the prompt, masked
    logits = [session.forward(session.session, np.array([padded], np.int64), cache)[0][:len(prompt)]]
    cache.length = len(prompt)  # the next token overwrites the first pad slot
    for token in rest:
        logits.append(session.forward(session.session, np.array([[token]], np.int64), cache)[0])
    return np.concatenate(logits)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "qwen3moe"])
def test_static_graph_matches_the_portable_graph_and_transformers(exported, static, make_checkpoint, arch):
    portable = exported(arch, None, "f16")
    reference = _run(portable, PROMPT)
    tokens = list(PROMPT)
    for _ in range(DECODE):  # the portable graph's own greedy continuation, fed to both
        tokens.append(int(_run(portable, tokens)[-1].argmax()))
    dynamic = _run(portable, tokens)
    ours = _run(static(arch), tokens, pad_to=GEAR)
    assert ours.shape == dynamic.shape == (len(PROMPT) + DECODE, dynamic.shape[1])
    ulp = np.spacing(np.float16(np.abs(dynamic).max())).astype(np.float32)
    assert np.abs(ours - dynamic).max() <= 4 * ulp
    assert np.abs(reference - dynamic[:len(PROMPT)]).max() == 0  # the portable graph itself is deterministic
    result = agreement(transformers_logits(make_checkpoint(arch), tokens), ours)
    assert result.top1 >= 0.95 and result.kl_mean <= 2e-5, result.summary()


def test_static_graph_io_is_fixed_but_the_sequence_and_uses_head_dim_from_the_config(static, make_checkpoint):
    folder = static("qwen3")
    config = json.loads((make_checkpoint("qwen3") / "config.json").read_text())
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    dims = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in graph.input}
    assert "attention_mask" not in dims and dims["input_ids"][0] == 1 and isinstance(dims["input_ids"][1], str)
    assert dims["past_key_values.0.key"] == [1, config["num_key_value_heads"], CONTEXT, config["head_dim"]]
    assert config["head_dim"] != config["hidden_size"] // config["num_attention_heads"]  # the trap community ports fall in
    assert not {n.op_type for n in graph.node} & {"Range", "ScatterND", "ScatterElements"}
    assert {n.op_type for n in graph.node if n.output[0].startswith("present")} == {"Add"}  # no growing Concat
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)
    assert {o.name for o in graph.output if o.name.startswith("present")} == {
        f"present.{i}.{kv}" for i in range(config["num_hidden_layers"]) for kv in ("key", "value")}


def test_the_folder_carries_its_atc_command_and_provider_options(static):
    folder = static("qwen2")
    script = (folder / "atc.sh").read_text()
    for part in ("--framework=5", "--soc_version=Ascend910B1", "--input_format=ND", "input_ids:1,-1",
                 f"past_key_values.0.key:1,2,{CONTEXT},16", f"--dynamic_dims=1,1;{GEAR},{GEAR}",
                 "--precision_mode=must_keep_origin_dtype", "--model=model.onnx"):
        assert part in script, part
    options = json.loads((folder / "provider_options.json").read_text())
    assert options["CANNExecutionProvider"]["precision_mode"] == "must_keep_origin_dtype"
    manifest = json.loads((folder / "qwdeploy_backend.json").read_text())
    assert manifest["backend"] == "cann" and {p["name"] for p in manifest["passes"]} == {"fold_weight_casts", "static_kv"}
    assert next(p["count"] for p in manifest["passes"] if p["name"] == "static_kv") == 2 * 2  # k and v, two layers


def test_a_static_graph_refuses_more_tokens_than_its_buffers(static):
    from qwdeploy.toolkit.errors import QwdeployError

    session = OrtSession(static("qwen2"), "CPUExecutionProvider", threads=1, options={})
    cache = session.new_cache(1)
    with pytest.raises(QwdeployError, match=f"{CONTEXT + 1} tokens do not fit the static graph's {CONTEXT} KV slots"):
        session.forward(session.session, np.ones((1, CONTEXT + 1), np.int64), cache)


def test_the_cann_provider_runs_with_the_folders_options_and_the_cpu_without(static):
    from qwdeploy.toolkit.runtimes.ort.session import provider_with_options

    folder = static("qwen2")
    name, options = provider_with_options(folder, "CANNExecutionProvider")
    assert name == "CANNExecutionProvider" and options["precision_mode"] == "must_keep_origin_dtype"
    assert provider_with_options(folder, "CPUExecutionProvider") == "CPUExecutionProvider"


FAKE_ATC = """#!/bin/sh
# Stands in for CANN's atc: records its arguments, writes the .om it was asked for, or fails on request.
echo "$@" > "$ATC_LOG"
[ -n "$ATC_FAIL" ] && { echo "ATC run failed, E19010: no parser for op Foo"; exit 1; }
for arg in "$@"; do case "$arg" in --output=*) touch "${arg#--output=}.om";; esac; done
"""


@pytest.mark.parametrize("fails", [False, True])
def test_atc_runs_when_it_is_on_path_and_its_failure_is_one_line(make_checkpoint, tmp_path, monkeypatch, fails):
    from qwdeploy.exporters.onnx.exporter import export
    from qwdeploy.exporters.request import ExportRequest
    from qwdeploy.toolkit.checkpoint import open_checkpoint
    from qwdeploy.toolkit.errors import QwdeployError
    from qwdeploy.toolkit.profiles import load_profile

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "atc").write_text(FAKE_ATC)
    (bin_dir / "atc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("ATC_LOG", str(tmp_path / "atc.args"))
    if fails:
        monkeypatch.setenv("ATC_FAIL", "1")
    request = ExportRequest(open_checkpoint(make_checkpoint("qwen2")), tmp_path / "out", target="cann",
                            profile=load_profile("ascend-310p"), show_progress=False, verify=False,
                            options={"context": str(CONTEXT)})
    if fails:
        with pytest.raises(QwdeployError, match="atc failed \\(1\\): ATC run failed, E19010: no parser for op Foo"):
            export(request)
        assert not (tmp_path / "out").exists()
        return
    result = export(request)
    assert ("atc", "compiled by atc") in result.summary
    assert (tmp_path / "out" / "model_Ascend310P3.om").is_file()
    assert "--soc_version=Ascend310P3" in (tmp_path / "atc.args").read_text()
