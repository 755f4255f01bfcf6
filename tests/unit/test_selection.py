"""`export --profile` without a type: candidates sized from the spec, the first that fits chosen, and why.

Estimates are held to the artifacts the exporters really write; decisions to the profiles' budgets.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from qwdeploy.exporters.gguf.exporter import export as export_gguf
from qwdeploy.exporters.onnx.exporter import export as export_onnx
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.bundle.plan import memory_plan
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.demo import demo_config
from qwdeploy.toolkit.errors import ProfileError, QwdeployError
from qwdeploy.toolkit.profiles import load_profile
from qwdeploy.toolkit.runtimes.ort.facts import read_graph
from qwdeploy.toolkit.selection import Candidate, choose, size
from qwdeploy.toolkit.spec import spec_from_config

GIB = 2**30
# Qwen2.5-7B's published shape: its Q8_0 file is 8.10 GB and its Q4_K_M file 4.68 GB.
QWEN25_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, tie_word_embeddings=False, max_position_embeddings=32768)


def _spec(**shape):
    return spec_from_config({**demo_config("qwen2", "small", "bfloat16"), **shape})


def test_a_7b_model_on_a_raspberry_pi_5_is_q4_k_m_because_q8_0_does_not_fit():
    profile = load_profile("rpi5")
    choice = choose(_spec(**QWEN25_7B), profile)
    assert choice.chosen == Candidate("gguf", "q4_k_m")
    q8, q4 = (s.plan for s in choice.sized)
    assert abs(q8.weights - 8.10e9) < 0.02 * 8.10e9 and abs(q4.weights - 4.68e9) < 0.02 * 4.68e9
    kv = 28 * 4 * 128 * 2 * 2 * 4096  # layers, KV heads, head dim, K and V, f16, 4096 tokens
    for plan in (q8, q4):
        assert plan.kv_cache == kv and plan.budget == 6 * GIB
        assert plan.total == plan.weights + plan.kv_cache + plan.runtime_overhead
    assert q8.total > 6 * GIB >= q4.total
    rows = dict(choice.reasons())
    assert rows["gguf q8_0"].startswith("does not fit") and rows["gguf q4_k_m (chosen)"].startswith("fits")


@pytest.mark.parametrize(("profile", "chosen"), [
    ("rpi5", Candidate("gguf", "q8_0")),  # 8-bit fits a 0.5B model
    ("ascend-310b", Candidate("onnx", "f16")),  # the CANN graph
    ("ascend-910b", Candidate("onnx", "f16")),
    ("x86-server", Candidate("onnx", "int4")),
    ("jetson-orin-nano", Candidate("onnx", "f16")),
])
def test_a_small_model_gets_each_devices_first_preference(profile, chosen):
    assert choose(_spec(), load_profile(profile)).chosen == chosen


def test_a_format_narrows_the_preferences_and_nothing_fitting_is_one_error():
    assert choose(_spec(**QWEN25_7B), load_profile("x86-server"), "gguf").chosen == Candidate("gguf", "q4_k_m")
    assert choose(_spec(), load_profile("rpi5"), "onnx").chosen == Candidate("onnx", "int4")  # the profile's type
    with pytest.raises(QwdeployError, match=r"nothing ascend-310b prefers fits: the smallest, gguf q4_0, needs .* "
                                            r"of 5120\.0 MiB"):
        choose(_spec(**QWEN25_7B), load_profile("ascend-310b"))


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_gguf_estimates_are_the_bytes_the_exporter_writes(make_checkpoint, tmp_path, arch):
    checkpoint = open_checkpoint(make_checkpoint(arch))
    profile = load_profile("x86-server")
    for quant in ("f16", "q8_0", "q4_0", "q4_k_m"):
        out = tmp_path / f"{quant}.gguf"
        export_gguf(ExportRequest(checkpoint, out, quant=quant, show_progress=False, verify=False))
        actual = memory_plan(out, "gguf", profile)
        assert size(checkpoint.spec, Candidate("gguf", quant), profile).plan == actual, quant


@pytest.mark.parametrize(("arch", "target", "quant", "profile"), [
    ("qwen2", "cpu", "int4", "x86-server"), ("qwen3", "cpu", "int8", "x86-server"),
    ("qwen2", "cuda", "int4", "jetson-orin-nano"), ("qwen3", "cuda", "f16", "h100"),
    ("qwen3", "cann", "f16", "ascend-310p"),
])
def test_onnx_estimates_are_within_6_percent_of_the_graph_written(make_checkpoint, tmp_path, arch, target, quant,
                                                                  profile):
    checkpoint = open_checkpoint(make_checkpoint(arch))
    device = load_profile(profile)
    export_onnx(ExportRequest(checkpoint, tmp_path / "m", quant=quant, target=target, profile=device,
                              show_progress=False, verify=False))
    facts = read_graph(tmp_path / "m")
    plan = size(checkpoint.spec, Candidate("onnx", quant), device).plan
    assert abs(plan.weights - facts.weight_bytes) <= 0.06 * facts.weight_bytes
    assert plan.kv_cache == facts.kv_bytes_per_token * plan.context


def _profile_file(tmp_path, budget_gib: float):
    path = tmp_path / "board.toml"
    path.write_text(f"""description = "a board"
[memory]
total_gib = 8
budget_gib = {budget_gib!r}
[cpu]
arch = "aarch64"
cores = 4
[deploy]
format = "gguf"
backend = "cpu"
dtypes = ["q8_0", "q4_k_m"]
gguf_quant = "q8_0"
onnx_quant = "int4"
prefer = ["gguf:q8_0", "gguf:q4_k_m"]
""")
    return path


def test_export_with_a_profile_prints_why_and_writes_what_fits(make_checkpoint, tmp_path):
    """A budget between what the Q8_0 and the Q4_K_M files really need: export takes Q4_K_M and says why."""
    checkpoint = make_checkpoint("qwen3")
    loose = load_profile(_profile_file(tmp_path, 8.0))
    totals = {}
    for quant in ("q8_0", "q4_k_m"):
        out = tmp_path / f"{quant}.gguf"
        export_gguf(ExportRequest(open_checkpoint(checkpoint), out, quant=quant, show_progress=False, verify=False))
        totals[quant] = memory_plan(out, "gguf", loose).total
    assert totals["q4_k_m"] < totals["q8_0"]
    budget = (totals["q4_k_m"] + totals["q8_0"]) / 2 / GIB
    made = CliRunner().invoke(cli, ["export", str(checkpoint), "--profile", str(_profile_file(tmp_path, budget)),
                                    "-o", str(tmp_path / "auto.gguf"), "--no-verify"])
    assert made.exit_code == 0, made.output
    lines = made.stdout.splitlines()
    assert lines[0] == "board: gguf q4_k_m, the first type it prefers whose estimated memory fits"
    assert lines[1].startswith("gguf q8_0") and "does not fit" in lines[1]
    assert lines[2].startswith("gguf q4_k_m (chosen)") and "fits:" in lines[2]
    assert any(line.startswith("type") and "q4_k_m" in line for line in lines)
    assert any(line.startswith("fits board") for line in lines)
    assert memory_plan(tmp_path / "auto.gguf", "gguf", loose).total == totals["q4_k_m"]


@pytest.mark.parametrize(("prefer", "message"), [
    ('["gguf:q4_0"]', "'prefer' entry 'gguf:q4_0' is not in 'dtypes'"),
    ('["gguf:int4"]', "'prefer' has unknown value 'gguf:int4'"),
])
def test_profile_preferences_are_checked_on_load(tmp_path, prefer, message):
    path = _profile_file(tmp_path, 4.0)
    path.write_text(path.read_text().replace('prefer = ["gguf:q8_0", "gguf:q4_k_m"]', f"prefer = {prefer}"))
    with pytest.raises(ProfileError, match=message):
        load_profile(path)
