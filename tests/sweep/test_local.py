"""`qwdeploy sweep` on this machine: the table holds what the same steps give by hand, reruns reuse, failures
stay in their cells.

Equality, not tolerance, where the sweep and the hand run compute the same thing: GGUF export is deterministic
(same bytes, same sha256), and eval's figures come from llama.cpp and transformers on the same tokens in fresh
processes. Timings are measurements on a shared machine: only their presence and sign are checked.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest

from qwdeploy.exporters import EXPORTERS
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.bundle.plan import memory_plan
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.checksums import file_sha256
from qwdeploy.toolkit.eval.api import evaluate
from qwdeploy.toolkit.eval.options import EvalOptions
from qwdeploy.toolkit.profiles import load_profile
from qwdeploy.toolkit.sweep.report import sweep_schema

from sweep_cases import ARCHS, MAX_PPL_RATIO, POSITIONS, QUANTS, TARGETS, run_sweep, write_plan

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAN = ("rpi5", "x86-server")  # the targets whose cells run; tiny-board's are skipped
FIGURES = ("artifact", "fit", "quality", "speed", "usd_per_million_tokens")


def _ids(arch: str, targets=RAN) -> set[str]:
    return {f"{arch}/gguf-{q}/{t}" for q in QUANTS for t in targets}


def test_every_cell_of_the_matrix_is_run_or_skipped_with_a_reason(swept):
    cells = {c["id"]: c for c in swept.doc["cells"]}
    assert set(cells) == {f"{a}/gguf-{q}/{t}" for a in ARCHS for q in QUANTS for t in TARGETS}
    for arch in ARCHS:
        assert {i for i in cells if cells[i]["status"] == "done"} >= _ids(arch)
        assert cells[f"{arch}/gguf-q4_0/tiny-board"]["reason"].startswith("q4_0 is not among tiny-board's types")
        for quant in ("f16", "q8_0"):
            skipped = cells[f"{arch}/gguf-{quant}/tiny-board"]
            assert skipped["status"] == "skipped" and skipped["reason"].startswith("does not fit: weights")
    # Each GGUF file is exported once for both targets, each checkpoint evaluated once (one reference pass),
    # and both targets are this machine's CPU, so one profile serves both.
    assert swept.doc["work"] == {"exports": 6, "evals": 2, "profiles": 6}
    assert swept.doc["runner"] == {"kind": "local", "address": None}


def test_the_table_holds_what_export_and_eval_give_by_hand(swept, checkpoints, tmp_path):
    checkpoint = checkpoints / "qwen3"
    out = tmp_path / "by-hand.gguf"
    EXPORTERS.get("gguf").export(ExportRequest(open_checkpoint(checkpoint), out, quant="q8_0", verify=False,
                                               show_progress=False))
    report = evaluate(EvalOptions((out,), checkpoint, positions=POSITIONS, progress=False))
    by_hand = report.artifacts[0]
    for target in RAN:
        cell = swept.cell(f"qwen3/gguf-q8_0/{target}")
        assert cell["artifact"]["size_bytes"] == out.stat().st_size
        assert cell["artifact"]["sha256"] == file_sha256(out)
        quality = cell["quality"]
        assert quality["perplexity"] == by_hand.perplexity.value
        assert quality["reference_perplexity"] == by_hand.perplexity.reference
        assert quality["ppl_ratio"] == by_hand.perplexity.ratio
        assert quality["kl_mean"] == by_hand.agreement.kl_mean and quality["top1"] == by_hand.agreement.top1
        plan = memory_plan(out, "gguf", load_profile(target))
        assert cell["fit"] == {"total_bytes": plan.total, "budget_bytes": plan.budget, "fits": plan.fits}


def test_speed_cost_and_where_it_ran(swept):
    for arch in ARCHS:
        for cell_id in _ids(arch):
            cell = swept.cell(cell_id)
            speed = cell["speed"]
            assert speed["ttft_s"] > 0 and speed["decode_tokens_per_s"] > 0 and speed["host_peak_bytes"] > 0
            # Locally this machine stands in for every target, and the result says so.
            assert speed["where"]["node"] == "local" and speed["where"]["stand_in"] is True
            price = load_profile(cell["target"]).deploy.usd_per_hour
            expected = price / 3600 / speed["decode_tokens_per_s"] * 1e6 if price else None
            assert cell["usd_per_million_tokens"] == (pytest.approx(expected) if expected else None)
    assert "standing in for rpi5" in swept.output


def test_sweep_json_follows_its_schema_and_the_markdown_table_lists_every_cell(swept):
    schema = sweep_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(swept.doc, schema)
    table = (swept.out / "sweep.md").read_text()
    for cell in swept.doc["cells"]:
        assert f"| {cell['id']} | {cell['status']} |" in table
    for name in ("quality-vs-speed.png", "pareto.png"):
        assert (swept.out / name).read_bytes().startswith(PNG_SIGNATURE)
        assert f"![{name}]({name})" in table


def test_the_best_cell_per_target_is_the_fastest_within_the_perplexity_budget(swept):
    for target in RAN:
        eligible = [c for c in swept.doc["cells"] if c["target"] == target and c["status"] == "done"
                    and c["fit"]["fits"] and c["quality"]["ppl_ratio"] <= MAX_PPL_RATIO]
        best = next(b for b in swept.doc["best"] if b["target"] == target)
        fastest = max(eligible, key=lambda c: c["speed"]["decode_tokens_per_s"])
        assert best["cell"] == fastest["id"]
    assert next(b for b in swept.doc["best"] if b["target"] == "tiny-board")["cell"] is None
    assert "fastest decode, fitting the budget, with ppl ratio <= 1.05" in swept.doc["rule"]


def _figures(doc: dict) -> dict:
    return {c["id"]: {k: c[k] for k in FIGURES} for c in doc["cells"]}


def test_a_rerun_with_nothing_changed_does_no_work(swept, tmp_path):
    again = run_sweep(swept.plan, Path(shutil.copytree(swept.out, tmp_path / "out")))
    assert again.doc["work"] == {"exports": 0, "evals": 0, "profiles": 0}
    assert all(c["reused"] for c in again.doc["cells"] if c["status"] == "done")
    assert _figures(again.doc) == _figures(swept.doc)
    assert "ran 0 exports, 0 evaluations, 0 profiles; 12 cells reused" in again.output


def test_rewriting_one_checkpoints_config_reruns_only_its_cells(swept, checkpoints, tmp_path):
    shutil.copytree(checkpoints, tmp_path / "checkpoints")  # copy2 keeps the weights' times: same fingerprint
    config = tmp_path / "checkpoints" / "qwen2" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()), indent=4, sort_keys=True))  # same meaning
    # A narrower plan (q8_0 only) over the same --out: the cell log is per cell, so it still reuses.
    plan = write_plan(tmp_path / "plan", {arch: tmp_path / "checkpoints" / arch for arch in ARCHS}, quants=("q8_0",))
    again = run_sweep(plan, Path(shutil.copytree(swept.out, tmp_path / "out")))
    assert again.doc["work"] == {"exports": 1, "evals": 1, "profiles": 1}
    rerun = {c["id"] for c in again.doc["cells"] if c["status"] == "done" and not c["reused"]}
    assert rerun == {f"qwen2/gguf-q8_0/{target}" for target in RAN}
    assert all(again.cell(f"qwen3/gguf-q8_0/{target}")["reused"] for target in RAN)
    for cell_id in rerun:  # an equivalent config: the same model, the same scores
        assert again.cell(cell_id)["quality"] == swept.cell(cell_id)["quality"]


def test_a_damaged_checkpoint_fails_its_cells_and_the_others_finish(swept, checkpoints, tmp_path):
    damaged = Path(shutil.copytree(checkpoints / "qwen2", tmp_path / "damaged"))
    weights = damaged / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    plan = write_plan(tmp_path / "plan", {**{a: checkpoints / a for a in ARCHS}, "damaged": damaged})
    again = run_sweep(plan, Path(shutil.copytree(swept.out, tmp_path / "out")))
    for cell_id in _ids("damaged"):
        cell = again.cell(cell_id)
        assert cell["status"] == "failed" and cell["reason"].startswith("export: ")
        assert "truncated" in cell["reason"] and "\n" not in cell["reason"]
        assert f"failed: {cell_id}: export: " in again.output
    # Only the damaged checkpoint's exports ran: the others' cells are reused, untouched.
    assert again.doc["work"] == {"exports": 3, "evals": 0, "profiles": 0}
    assert all(again.cell(i)["status"] == "done" and again.cell(i)["reused"] for a in ARCHS for i in _ids(a))


def test_without_matplotlib_the_results_are_still_written(swept, tmp_path, monkeypatch):
    out = Path(shutil.copytree(swept.out, tmp_path / "out", ignore=shutil.ignore_patterns("*.png", "sweep.*")))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    again = run_sweep(swept.plan, out)
    assert "no plots: writing the PNG needs matplotlib: pip install 'qwdeploy[profile]'" in again.output
    assert not list(out.glob("*.png")) and "No plots: " in (out / "sweep.md").read_text()
