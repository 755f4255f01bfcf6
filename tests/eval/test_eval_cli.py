"""`qwdeploy eval` end to end, run once on a tiny random checkpoint and four artifacts of it: f32 GGUF, f32
ONNX, the CANN static graph (f16, a 128-token KV buffer, on the CPU) and a GGUF whose first MLP is zeroed.

Bounds: f32 artifacts differ from transformers' fp32 only in summation order: KL measured 2e-12 (GGUF) and
2e-12 (ONNX), |Δlogit| 2e-5 on logits of std ~3; 1e-5 is f16's KL bound (tests/parity), so a graph computing
anything else misses it by orders. One MLP zeroed moves the logits by O(1): KL 2.0 .. 3.8 (exporters/onnx/verify).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.eval.needle import ANSWER_TOKENS
from qwdeploy.toolkit.eval.report import eval_schema
from qwdeploy.toolkit.profiler.schema import schema_errors

from eval_cases import STATIC_CONTEXT

POSITIONS = 160  # > STATIC_CONTEXT: the static graph is scored on a shorter prefix
CONTEXTS = (96, 144, 8192)  # 144 exceeds the static graph's buffer, 8192 every model's 4096
DEPTHS = 2
MAX_KL = 1e-3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAMES = ("gguf_f32", "onnx_f32", "cann_static", "damaged")


@dataclass(frozen=True)
class Run:
    exit_code: int
    output: str
    out: Path
    doc: dict
    paths: dict[str, Path]

    def artifact(self, name: str) -> dict:
        return next(a for a in self.doc["artifacts"] if a["path"] == str(self.paths[name]))


@pytest.fixture(scope="module")
def run(checkpoint, artifacts, profile_json, tmp_path_factory) -> Run:
    paths = {name: artifacts(name) for name in NAMES}
    out = tmp_path_factory.mktemp("eval") / "out"
    result = CliRunner().invoke(cli, [
        "eval", str(checkpoint), *map(str, paths.values()), "--positions", str(POSITIONS), "--needle",
        "--contexts", ",".join(map(str, CONTEXTS)), "--depths", str(DEPTHS), "--max-kl", str(MAX_KL),
        "--profile-json", str(profile_json), "--out", str(out)], catch_exceptions=False)
    return Run(result.exit_code, result.output, out, json.loads((out / "eval.json").read_text()), paths)


def test_f32_artifacts_agree_with_transformers_at_every_position(run):
    for name in ("gguf_f32", "onnx_f32"):
        doc = run.artifact(name)
        assert doc["positions"] == POSITIONS
        assert doc["agreement"]["kl_mean"] < 1e-5 and doc["agreement"]["top1"] == 1.0, doc["agreement"]
        assert doc["agreement"]["max_abs"] < 1e-3
        assert [(b["start"], b["end"], b["positions"]) for b in doc["buckets"]] == [(0, 128, 128), (128, 512, 32)]
        assert all(b["kl_mean"] < 1e-5 and b["top1"] == 1.0 for b in doc["buckets"])


def _nll(logits: np.ndarray, ids: list[int]) -> np.ndarray:
    """-log softmax(logits[i])[ids[i + 1]], written apart from eval's own code."""
    x = logits[:-1].astype(np.float64)
    log_probs = x - x.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(x)), ids[1:]]


def test_perplexity_is_exp_mean_nll_of_transformers_logits(run, checkpoint):
    from tokenizers import Tokenizer

    from qwdeploy.toolkit.reference import transformers_logits
    from qwdeploy.toolkit.training import default_text

    ids = Tokenizer.from_file(str(checkpoint / "tokenizer.json")).encode(default_text()).ids[:POSITIONS]
    expected = math.exp(_nll(transformers_logits(checkpoint, ids), ids).mean())
    assert run.doc["text"] == {"source": "built-in", "tokens": run.doc["text"]["tokens"], "scored": POSITIONS}
    assert run.doc["reference"]["perplexity"] == pytest.approx(expected, rel=1e-9)
    for name in ("gguf_f32", "onnx_f32"):
        ppl = run.artifact(name)["perplexity"]
        assert ppl["reference"] == pytest.approx(expected, rel=1e-9) and ppl["tokens"] == POSITIONS - 1
        # exp of a mean NLL that f32 rounding moves by ~1e-6 nats
        assert ppl["value"] == pytest.approx(expected, rel=1e-4) and ppl["ratio"] == pytest.approx(1, rel=1e-4)


def test_damaged_artifact_fails_the_kl_gate_naming_it(run):
    assert run.exit_code == 5, run.output
    error = next(line for line in run.output.splitlines() if line.startswith("error:"))
    assert f"{run.paths['damaged']}: KL mean" in error and f"--max-kl {MAX_KL:g}" in error
    assert all(str(run.paths[name]) not in error for name in ("gguf_f32", "onnx_f32", "cann_static"))
    assert run.artifact("damaged")["agreement"]["kl_mean"] > 0.1
    assert run.doc["failures"] == [error.removeprefix("error: ")]


def test_static_graph_is_scored_within_its_context_and_says_what_it_skipped(run):
    doc = run.artifact("cann_static")
    assert doc["context_length"] == STATIC_CONTEXT and doc["positions"] == STATIC_CONTEXT
    assert doc["perplexity"]["tokens"] == STATIC_CONTEXT - 1
    # f16 weights and KV: the bound every f16 artifact meets against transformers (tests/parity)
    assert doc["agreement"]["kl_mean"] <= 2e-5 and doc["agreement"]["top1"] >= 0.95
    assert any(f"first {STATIC_CONTEXT} of {POSITIONS}" in note for note in doc["notes"])
    assert any("needle rows 144, 8192 skipped" in note for note in doc["notes"])
    for cell in doc["needle"]["cells"]:
        assert (cell["status"] == "skipped") == (cell["context"] > STATIC_CONTEXT)
        assert (cell["reason"] is not None) == (cell["status"] == "skipped")
    assert [c["status"] for c in run.doc["reference"]["needle"] if c["context"] == 8192] == ["skipped"] * DEPTHS
    assert "needle rows 8192 skipped" in run.doc["reference"]["notes"][0]


def test_needle_grid_cells_fit_their_context_and_f32_answers_equal_the_references(run):
    reference = run.doc["reference"]["needle"]
    assert [(c["context"], c["depth"]) for c in reference] == [(c, d) for c in CONTEXTS for d in (0.0, 1.0)]
    for cell in reference:
        assert cell["context"] - 20 <= cell["prompt_tokens"] + ANSWER_TOKENS <= cell["context"]
    for name in ("gguf_f32", "onnx_f32"):
        cells = run.artifact(name)["needle"]["cells"]
        assert [c["answer"] for c in cells] == [c["answer"] for c in reference]
        assert [c["status"] for c in cells] == [c["status"] for c in reference]


def test_json_validates_against_its_schema_and_every_png_is_an_image(run):
    from matplotlib import image

    jsonschema.Draft202012Validator.check_schema(eval_schema())
    jsonschema.validate(run.doc, eval_schema(), cls=jsonschema.Draft202012Validator)
    assert schema_errors(run.doc, eval_schema()) == []  # the validator used where jsonschema is not installed
    broken = {**run.doc, "artifacts": [{**run.doc["artifacts"][0], "kind": "safetensors"}]}
    assert len(schema_errors(broken, eval_schema())) == 1
    pngs = sorted(p.name for p in run.out.glob("*.png"))
    assert pngs == sorted(["agreement.png", "needle-reference.png", "needle-1-f32.gguf.png",
                           "needle-2-onnx-f32.png", "needle-3-cann-static.png", "needle-4-damaged.gguf.png"])
    for name in pngs:
        assert (run.out / name).read_bytes().startswith(PNG_SIGNATURE)
        pixels = image.imread(run.out / name)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100


def test_table_puts_the_artifacts_side_by_side_with_sizes_and_profiled_speed(run, profile_json):
    gguf = next(line for line in run.output.splitlines() if line.split()[:2] == [run.paths["gguf_f32"].name, "gguf"])
    decode = json.loads(profile_json.read_text())["summary"]["decode_tokens_per_s"]["median"]
    assert gguf.endswith(f"{decode:.1f} tok/s") and "MiB" in gguf
    assert run.artifact("gguf_f32")["speed"]["decode_tokens_per_s"] == decode
    assert run.artifact("onnx_f32")["speed"] is None
    markdown = (run.out / "eval.md").read_text()
    assert "| model | kind | size |" in markdown and f"| {run.paths['damaged'].name} | gguf |" in markdown
