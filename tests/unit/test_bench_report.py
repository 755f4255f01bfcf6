"""bench/report.py and bench/goals.py on a hand-made results document: ratios to the best anchor and the tables.

No tool runs here: the rows are written by hand, the way bench/run.py writes them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MIB = 2**20


def _load(name: str):
    sys.path.insert(0, str(BENCH))  # the bench's modules import each other by name, as scripts do
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


report, goals, common = _load("report"), _load("goals"), _load("common")


def _runtime(row: str, ours: bool, decode: float, prefill: float, rss: float, size_mib: float, bits: float) -> dict:
    return {"row": row, "group": "4-bit", "ours": ours, "shape": "qwen2.5-0.5b", "decode_tps": decode,
            "prefill_tps": prefill, "ttft_s": 128 / prefill, "peak_rss_mib": rss, "size_bytes": size_mib * MIB,
            "bits_per_weight": bits, "bandwidth_share": 0.5, "samples": [{}], "skipped": ""}


@pytest.fixture()
def doc() -> dict:
    runtime = [_runtime("qwdeploy CPU int4 (onnxruntime)", True, 60.0, 300.0, 400.0, 321.0, 5.2),
               _runtime("llama.cpp Q4_0 (qwdeploy's GGUF)", False, 50.0, 200.0, 500.0, 339.0, 5.5),
               _runtime("onnxruntime-genai int4", False, 40.0, 250.0, 600.0, 321.0, 5.2),
               {"row": "OpenVINO int4 (openvino-genai)", "group": "4-bit", "ours": False, "shape": "qwen2.5-0.5b",
                "size_bytes": 0, "samples": [], "skipped": "skipped: environment openvino unavailable (no wheel)"}]
    exports = [{"row": "qwdeploy GGUF f16", "group": "GGUF f16", "ours": True, "shape": "qwen2.5-0.5b",
                "parameters": 494_000_000, "seconds": 8.0, "peak_rss_mib": 200.0, "size_bytes": 950 * MIB,
                "skipped": ""},
               {"row": "llama.cpp convert f16", "group": "GGUF f16", "ours": False, "shape": "qwen2.5-0.5b",
                "parameters": 494_000_000, "seconds": 16.0, "peak_rss_mib": 1000.0, "size_bytes": 950 * MIB,
                "skipped": ""}]
    fidelity = [{"row": "qwdeploy CPU int4 (onnxruntime)", "group": "4-bit", "ours": True, "shape": "qwen2.5-0.5b",
                 "positions": 128, "kl_mean": 0.01, "kl_max": 0.1, "top1": 0.95},
                {"row": "onnxruntime-genai int4", "group": "4-bit", "ours": False, "shape": "qwen2.5-0.5b",
                 "positions": 128, "kl_mean": 0.04, "kl_max": 0.3, "top1": 0.9}]
    return {"runtime": runtime, "exports": exports, "fidelity": fidelity,
            "graphs": [{"row": "qwdeploy CPU int4 (onnxruntime)", "shape": "qwen2.5-0.5b", "ours": True,
                        "nodes": 256, "nodes_per_layer": 10, "launches_per_step": 254, "launches_per_layer": 254 / 24}]}


def test_every_row_is_divided_by_the_best_anchor_of_its_group(doc):
    report.add_ratios(doc["runtime"], report.RUNTIME_METRICS)
    ours, llama, genai, skipped = doc["runtime"]
    assert ours["decode_tps_vs_best"] == pytest.approx(60 / 50)  # the fastest anchor decodes 50 tok/s
    assert ours["prefill_tps_vs_best"] == pytest.approx(300 / 250)  # and a different one prefills fastest
    assert ours["peak_rss_mib_vs_best"] == pytest.approx(400 / 500)  # the smallest anchor, not the fastest
    assert llama["decode_tps_vs_best"] == pytest.approx(1.0) and genai["decode_tps_vs_best"] == pytest.approx(0.8)
    assert "decode_tps_vs_best" not in skipped


def test_no_anchor_in_a_group_means_no_ratio(doc):
    alone = [dict(doc["runtime"][0], group="fp32")]
    report.add_ratios(alone, report.RUNTIME_METRICS)
    assert "decode_tps_vs_best" not in alone[0]
    assert "| - |" in report.runtime_table(alone)


def test_tables_show_ratios_skips_and_bold_qwdeploy_rows(doc):
    report.add_ratios(doc["runtime"], report.RUNTIME_METRICS)
    report.add_ratios(doc["exports"], report.EXPORT_METRICS)
    runtime, exports = report.runtime_table(doc["runtime"]), report.export_table(doc["exports"])
    assert "| **qwdeploy CPU int4 (onnxruntime)** |" in runtime and "| 1.20x | 1.20x | 0.80x |" in runtime
    assert "skipped: environment openvino unavailable (no wheel)" in runtime
    assert "| 79 |" in runtime  # peak RSS 400 MiB - 321 MiB artifact
    assert "| **qwdeploy GGUF f16** | 8.0 | 200 | 950 | 0.50x | 0.20x |" in exports
    header, rule = exports.splitlines()[:2]
    assert rule.count("---") == header.count("|") - 1


def test_each_run_is_held_to_the_bandwidth_measured_before_it():
    row = {"bytes_per_token": 3e8, "samples": [{"decode_tps": 100.0, "bandwidth_bps": 60e9},
                                               {"decode_tps": 90.0, "bandwidth_bps": 30e9},
                                               {"decode_tps": 80.0, "bandwidth_bps": 40e9}]}
    # Per run: 0.5, 0.9, 0.6; the medians alone (90 tok/s over 40 GB/s) would say 0.675.
    assert report.bandwidth_share(row, 40e9) == pytest.approx(0.6)
    older = {"bytes_per_token": 3e8, "samples": [{"decode_tps": 100.0}, {"decode_tps": 80.0}, {}]}
    assert report.bandwidth_share(older, 40e9) == pytest.approx(0.675)  # runs without a sample: the median


def test_the_machine_line_gives_the_bandwidth_samples():
    samples = {"bandwidth_gbs": 51.0, "bandwidth_samples_gbs": [34.4, 51.0, 52.9, 50.1]}
    assert report._bandwidth_samples(samples) == ("median of 4 measurements, at the start and before every "
                                                  "runtime run, 34.4 to 52.9")
    assert report._bandwidth_samples({"bandwidth_gbs": 34.4}) == "one measurement"  # runs from before the samples


@pytest.mark.parametrize("vendor, family, model, flags, core", [
    ("AuthenticAMD", "26", "2", "avx512f avx512_vnni", "family 26 model 2, Zen 5"),
    ("AuthenticAMD", "25", "17", "avx512f avx512_vnni", "family 25 model 17, Zen 4"),
    ("AuthenticAMD", "25", "1", "avx2", "family 25 model 1, Zen 3"),
    ("GenuineIntel", "6", "143", "avx512f amx_tile", "family 6 model 143"),  # Intel: the numbers only
    ("", "", "", "", ""),  # no /proc/cpuinfo
])
def test_the_machine_names_the_core_generation_where_the_family_tells_it(monkeypatch, vendor, family, model, flags,
                                                                           core):
    fields = {"vendor_id": vendor, "cpu family": family, "model": model, "flags": flags}
    monkeypatch.setattr(common, "_cpuinfo", fields.__getitem__)
    assert common.cpu_core() == core


def test_goals_say_where_qwdeploy_is_short(doc):
    report.add_ratios(doc["runtime"], report.RUNTIME_METRICS)
    lines = goals.lines(doc)
    decode = next(line for line in lines if "decode 1.20x" in line)
    assert "target >= 1.3x: **short**" in decode and "(llama.cpp Q4_0 (qwdeploy's GGUF))" in decode
    assert any("mean KL 0.25x onnxruntime-genai int4's, target <= 0.5x: met" in line for line in lines)
    assert any("10.6 per layer), target <= 8 per layer: **short**" in line for line in lines)
    assert any("export peak RSS 0.20x llama.cpp convert f16's (target <= 0.5x: met), time 0.50x" in line
               for line in lines)
    assert any("is artifact size + 79 MiB, target <= +100 MiB: met" in line for line in lines)
    assert any("decode reads 50% of the measured bandwidth, target >= 70%: **short**" in line for line in lines)


def test_goals_hold_the_long_prompt_to_its_own_anchors(doc):
    long = [{"row": row, "shape": "qwen2.5-0.5b", "prompt": 1024, "prefill_tps": tps, "skipped": ""}
            for row, tps in (("qwdeploy CPU int4 (onnxruntime)", 1200.0), ("OpenVINO int4 (openvino-genai)", 1100.0),
                             ("llama.cpp Q4_0 (qwdeploy's GGUF)", 480.0), ("qwdeploy fp32 (onnxruntime)", 540.0))]
    lines = goals.lines({**doc, "prefill_long": long})
    assert ("qwen2.5-0.5b: CPU int4 prefill of a 1,024-token prompt 1.09x the fastest int4 anchor (OpenVINO int4 "
            "(openvino-genai)), target >= 1.2x: **short**") in lines


@pytest.mark.parametrize("script", sorted(str(p.relative_to(BENCH)) for p in BENCH.rglob("*.py")))
def test_every_bench_script_compiles(script: str):
    """The bench runs rarely and in its own environments: a syntax error would otherwise surface hours in."""
    compile((BENCH / script).read_text(), script, "exec")
