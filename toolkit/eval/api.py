"""evaluate(): artifacts and a reference checkpoint in, an EvalReport out.

One child process per model: a pass over the text (agreement and perplexity from the same logits), then
the needle grid. The reference runs first; its logits reach the artifacts' children through a file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from ..errors import QwdeployError
from ..runtimes.generate import OnnxTokenizer
from .answers import judge, skipped_note
from .gates import failures
from .jobs import run_target
from .logits import check_runnable
from .needle import Cell, grid
from .options import EvalOptions, check_gates
from .perplexity import Perplexity, perplexity
from .positions import buckets
from .results import ArtifactResult, CellResult, EvalReport, ReferenceResult, Speed, needle_match
from .speed import read_speeds
from .targets import Target, open_target, split_reference
from .text import load_text


class _Steps:
    """One progress bar over the targets, each a child process; hidden when stderr is not a terminal."""

    def __init__(self, total: int, show: bool):
        self._bar = tqdm(total=total, unit="model", disable=None if show else True)

    def run(self, label: str, fn: Callable[..., Any], *args: Any) -> Any:
        self._bar.set_description(label)
        result = fn(*args)
        self._bar.update()
        return result

    def close(self) -> None:
        self._bar.close()


def _scored_ids(text_ids: list[int], options: EvalOptions, reference: Target) -> list[int]:
    ids = text_ids[:min(options.positions, reference.context_length or options.positions)]
    if len(ids) < 2:
        raise QwdeployError("the text is shorter than two tokens: there is nothing to predict")
    return ids


def _reference_notes(reference: Target, ids: list[int], text_ids: list[int], options: EvalOptions,
                     cells: tuple[CellResult, ...] | None) -> tuple[str, ...]:
    notes: tuple[str, ...] = ()
    if len(ids) < min(len(text_ids), options.positions):
        notes = (f"scored the first {len(ids)} text tokens: the reference's context is {reference.context_length}",)
    return notes + (skipped_note(reference, cells) if cells is not None else ())


@dataclass(frozen=True)
class _Shared:
    """What every artifact is measured against, computed once from the reference."""

    ids: list[int]  # the scored text
    store: Path  # the reference's logits over `ids`
    reference_nll: np.ndarray  # [len(ids) - 1]
    tokenizer: OnnxTokenizer
    cells: list[Cell] | None  # the needle grid, None without --needle
    reference_cells: tuple[CellResult, ...] | None


def _artifact(target: Target, shared: _Shared, steps: _Steps, speed: Speed | None) -> ArtifactResult:
    ids = shared.ids
    positions = min(len(ids), target.context_length or len(ids))
    notes = () if positions == len(ids) else (
        f"scored the first {positions} of {len(ids)} tokens: the artifact's context is {target.context_length}",)
    outcome = steps.run(target.path.name, run_target, target, ids[:positions], shared.store, shared.cells or [],
                        False)
    scores = outcome.scores
    assert scores.agreement is not None
    ppl = Perplexity(perplexity(scores.nll), perplexity(shared.reference_nll[:positions - 1]), positions - 1)
    cells = match = None
    if shared.cells is not None and shared.reference_cells is not None:
        cells = judge(target, shared.cells, outcome.answers, shared.tokenizer)
        match = needle_match(cells, shared.reference_cells)
        notes += skipped_note(target, cells)
    return ArtifactResult(target, positions, scores.agreement.summary(), tuple(buckets(scores.agreement)), ppl,
                          cells, match, speed, notes)


def _reference(reference: Target, shared: _Shared, steps: _Steps) -> _Shared:
    """`shared` with the reference's NLL (its logits saved to shared.store) and its needle results."""
    outcome = steps.run(f"{reference.path.name} (reference)", run_target, reference, shared.ids, shared.store,
                        shared.cells or [], True)
    cells = None if shared.cells is None else judge(reference, shared.cells, outcome.answers, shared.tokenizer)
    return replace(shared, reference_nll=outcome.scores.nll, reference_cells=cells)


def evaluate(options: EvalOptions) -> EvalReport:
    """Every artifact against the reference; gates are checked and reported, not raised."""
    check_gates(options.gates, options.needle)
    reference, artifacts = split_reference(options.reference, [open_target(p) for p in options.artifacts])
    for target in (reference, *artifacts):
        check_runnable(target)
    speeds = read_speeds(options.profiles, [reference, *artifacts])
    text = load_text(options.text)
    tokenizer = OnnxTokenizer(reference.path)
    text_ids = tokenizer.encode(text.content)
    ids = _scored_ids(text_ids, options, reference)
    cells = grid(tokenizer.encode, options.needle) if options.needle is not None else None
    steps = _Steps(1 + len(artifacts), options.progress)
    try:
        with tempfile.TemporaryDirectory(prefix="qwdeploy-eval-") as tmp:
            shared = _Shared(ids, Path(tmp) / "reference-logits.npy", np.empty(0), tokenizer, cells, None)
            shared = _reference(reference, shared, steps)
            results = tuple(_artifact(t, shared, steps, speeds.get(t.path)) for t in artifacts)
    finally:
        steps.close()
    ref = ReferenceResult(reference, len(ids), perplexity(shared.reference_nll), shared.reference_cells,
                          speeds.get(reference.path),
                          _reference_notes(reference, ids, text_ids, options, shared.reference_cells))
    return EvalReport(options, text, len(text_ids), ref, results, failures(results, options.gates))
