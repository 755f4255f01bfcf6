"""eval's pieces without an engine: the needle grid, contexts, position buckets, retrieval, gates, refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import QwdeployError
from qwdeploy.toolkit.eval.gates import failures
from qwdeploy.toolkit.eval.needle import ANSWER_TOKENS, grid, retrieved
from qwdeploy.toolkit.eval.options import Gates, NeedleOptions, parse_contexts
from qwdeploy.toolkit.eval.perplexity import Perplexity, token_nll
from qwdeploy.toolkit.eval.positions import bucket_edges, buckets
from qwdeploy.toolkit.eval.results import FAIL, PASS, SKIPPED, ArtifactResult, CellResult, needle_match
from qwdeploy.toolkit.eval.targets import Target
from qwdeploy.toolkit.metrics import Agreement, PositionAgreement
from qwdeploy.toolkit.training.data import QUESTION


@pytest.fixture(scope="module")
def encode(checkpoint):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


def test_needle_prompts_fill_their_context_and_hide_the_key_at_its_depth(encode):
    contexts, depths = (128, 512, 1024), 5
    cells = grid(encode, NeedleOptions(contexts, depths))
    assert [(c.context, c.depth) for c in cells] == [(c, d) for c in contexts for d in (0, 0.25, 0.5, 0.75, 1)]
    for cell in cells:
        # within a filler sentence (< 15 tokens) of the room the answer leaves
        assert cell.context - 15 <= len(cell.prompt) + ANSWER_TOKENS <= cell.context
        assert cell.prompt[cell.key_at:cell.key_at + 5] == tuple(encode(cell.passkey))
    for row in range(len(contexts)):
        first, *middle, last = cells[row * depths:(row + 1) * depths]
        assert first.key_at <= 5  # "The pass key is" opens the haystack
        assert len(last.prompt) - last.key_at == len(encode(f"{last.passkey}. Remember it. {last.passkey} is the "
                                                          f"pass key. {QUESTION}"))  # only the question follows
        span = last.key_at - first.key_at
        for cell in middle:  # the same filler in every column; the needle lands after round(depth * sentences)
            assert abs(cell.key_at - first.key_at - cell.depth * span) <= max(15, 0.05 * span)
    assert len({c.passkey for c in cells}) == len(cells)


def test_needle_grid_refuses_contexts_too_short_for_a_haystack(encode):
    with pytest.raises(QwdeployError, match="too short"):
        grid(encode, NeedleOptions((32, 128), 2))


@pytest.mark.parametrize("answer, found", [(" 12345", True), ("12345.", True), (" 12345<|im_end|>", True),
                                           (" 123456", False), (" 1234", False), (" the key", False), ("", False)])
def test_retrieval_is_the_exact_passkey(answer, found):
    assert retrieved(answer, "12345") is found


def test_contexts_parse_with_k_suffixes_and_refuse_anything_else():
    assert parse_contexts("1k,4k,16K") == (1024, 4096, 16384)
    assert parse_contexts("512, 96,512") == (96, 512)
    for bad in ("1m", "0", "4k,", "-1", "1.5k"):
        with pytest.raises(QwdeployError, match="--contexts"):
            parse_contexts(bad)


def test_position_buckets_cover_every_position_once():
    assert bucket_edges(160) == [0, 128, 512]
    assert bucket_edges(512) == [0, 128, 512]
    assert bucket_edges(5000) == [0, 128, 512, 1024, 2048, 4096, 8192]
    kl = np.arange(3000, dtype=np.float64)
    found = buckets(PositionAgreement(kl=kl, top1=kl < 1000, max_abs=kl))
    assert [b.label for b in found] == ["0-128", "128-512", "512-1k", "1k-2k", "2k-4k"]
    assert [b.agreement.positions for b in found] == [128, 384, 512, 1024, 952]
    assert found[1].agreement.kl_mean == np.mean(kl[128:512]) and found[4].agreement.kl_max == 2999
    assert [b.agreement.top1 for b in found] == [1, 1, 488 / 512, 0, 0]


def test_token_nll_is_minus_log_softmax_at_the_next_token_across_chunks():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((300, 50)).astype(np.float32) * 3  # rows > 2 chunks of 128
    targets = rng.integers(0, 50, 299)
    probs = np.exp(logits.astype(np.float64))
    probs /= probs.sum(-1, keepdims=True)
    assert np.allclose(token_nll(logits, targets), -np.log(probs[np.arange(299), targets]), rtol=1e-12)


def _cell(context: int, status: str) -> CellResult:
    from qwdeploy.toolkit.eval.needle import Cell

    return CellResult(Cell(context, 0.5, "12345", (1, 2, 3), 1), status, None if status == SKIPPED else "", None)


def _result(kl: float, ratio: float, cells: tuple[CellResult, ...] | None = None,
            reference: tuple[CellResult, ...] | None = None) -> ArtifactResult:
    target = Target(Path("model.gguf"), "gguf", 4096, 1, "")
    match = needle_match(cells, reference) if cells is not None else None
    return ArtifactResult(target, 10, Agreement(10, 0.0, 1.0, kl, kl), (), Perplexity(ratio * 5.0, 5.0, 9), cells,
                          match, None, ())


def test_gates_name_the_artifact_and_the_figure_and_let_nan_fail():
    gates = Gates(max_kl=1e-3, max_ppl_ratio=1.01)
    assert failures((_result(1e-4, 1.005),), gates) == ()
    assert failures((_result(2e-3, 1.02),), gates) == (
        "model.gguf: KL mean 0.002 > --max-kl 0.001", "model.gguf: perplexity ratio 1.02 > --max-ppl-ratio 1.01")
    assert len(failures((_result(math.nan, math.nan),), gates)) == 2


def test_needle_gate_counts_only_cells_the_reference_retrieves_and_the_artifact_ran():
    reference = (_cell(96, PASS), _cell(96, PASS), _cell(96, FAIL), _cell(8192, PASS))
    artifact = (_cell(96, PASS), _cell(96, FAIL), _cell(96, PASS), _cell(8192, SKIPPED))
    match = needle_match(artifact, reference)
    assert (match.reference_passed, match.also_passed, match.share) == (2, 1, 0.5)
    assert failures((_result(0, 1, artifact, reference),), Gates(min_needle=0.5)) == ()
    (line,) = failures((_result(0, 1, artifact, reference),), Gates(min_needle=0.9))
    assert line == "model.gguf: retrieves 1 of the 2 needles the reference retrieves (50%) < --min-needle 90%"
    blind = (_cell(96, FAIL),) * 4
    (line,) = failures((_result(0, 1, artifact, blind),), Gates(min_needle=0.9))
    assert "the reference retrieves none" in line


@pytest.mark.parametrize("args, message", [
    (["--min-needle", "0.9"], "--min-needle gates the needle grid: add --needle"),
    (["--contexts", "1k"], "--contexts and --depths shape the needle grid: add --needle"),
    (["--max-kl", "nan"], "--max-kl must be a finite number >= 0"),
    (["--needle", "--contexts", "4x"], "--contexts takes comma-separated token counts"),
])
def test_bad_options_are_one_line_before_any_engine_runs(checkpoint, args, message):
    result = CliRunner().invoke(cli, ["eval", str(checkpoint), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_artifacts_without_a_reference_are_refused(artifacts):
    result = CliRunner().invoke(cli, ["eval", str(artifacts("gguf_f32"))])
    assert result.exit_code == 1 and "pass --reference CHECKPOINT" in result.output
    result = CliRunner().invoke(cli, ["eval", str(artifacts("gguf_f32")), "--reference", str(artifacts("gguf_f32"))])
    assert result.exit_code == 1 and "--reference must be a Hugging Face checkpoint folder" in result.output


def test_a_profile_of_an_artifact_not_evaluated_is_refused(profile_json, artifacts):
    from qwdeploy.toolkit.eval.speed import read_speeds
    from qwdeploy.toolkit.eval.targets import open_target

    with pytest.raises(QwdeployError, match="which is not among the artifacts evaluated"):
        read_speeds((profile_json,), [open_target(artifacts("onnx_f32"))])
