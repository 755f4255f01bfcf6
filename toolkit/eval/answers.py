"""The needle prompts answered greedily — every engine through the same generation loop, the model opened
once for all prompts — and the answers judged against their passkeys."""

from __future__ import annotations

from pathlib import Path

from ..runtimes.generate import Engine, OnnxTokenizer, open_artifact, picker, tokens
from .needle import ANSWER_TOKENS, Cell, retrieved
from .results import FAIL, PASS, SKIPPED, CellResult
from .targets import Target


def _engine(path: Path, kind: str, model) -> tuple[Engine, frozenset[int]]:
    if kind != "hf":
        engine, tokenizer = open_artifact(path, kind, "cpu")
        return engine, tokenizer.eos
    from ..runtimes.transformers.engine import HfEngine

    return HfEngine(model), OnnxTokenizer(path).eos


def greedy_answers(path: Path, kind: str, prompts: list[list[int]], model=None) -> list[list[int]]:
    """The ids generated after each prompt (stop id included), in the calling process; `model` is the loaded
    transformers model of a checkpoint."""
    engine, stop = _engine(path, kind, model)
    try:
        answers = []
        for prompt in prompts:
            engine.reset()
            answers.append(list(tokens(engine, prompt, ANSWER_TOKENS, picker(0.0, None), stop)))
        return answers
    finally:
        engine.close()


def runnable(target: Target, cells: list[Cell]) -> list[Cell]:
    return [cell for cell in cells if target.fits(cell.context)]


def judge(target: Target, cells: list[Cell], answers: list[list[int]],
          tokenizer: OnnxTokenizer) -> tuple[CellResult, ...]:
    """Each cell passed or failed by its answer (given for the runnable cells, in order), or skipped."""
    given = iter(answers)
    results = []
    for cell in cells:
        if not target.fits(cell.context):
            reason = f"needs {cell.context} tokens; the model's context is {target.context_length}"
            results.append(CellResult(cell, SKIPPED, None, reason))
            continue
        text = tokenizer.decode(next(given))
        results.append(CellResult(cell, PASS if retrieved(text, cell.passkey) else FAIL, text, None))
    return tuple(results)


def skipped_note(target: Target, results: tuple[CellResult, ...]) -> tuple[str, ...]:
    rows = sorted({r.cell.context for r in results if r.status == SKIPPED})
    if not rows:
        return ()
    return (f"needle rows {', '.join(map(str, rows))} skipped: beyond the context of {target.context_length}",)
