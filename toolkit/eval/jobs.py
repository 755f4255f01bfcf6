"""What one child process does for one target: a pass over the text, then the needle prompts, with its
engine loaded in the child so a native crash becomes one line. The reference's job saves its logits for
the artifacts' jobs to compare with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines import run_isolated
from ..reference import model_logits, reference_model
from .answers import greedy_answers, runnable
from .logits import LOGITS, Scores, compare
from .needle import Cell
from .perplexity import token_nll
from .targets import Target

ADVICE = "evaluate the other artifacts without it, or report this engine fault"


@dataclass(frozen=True)
class Outcome:
    scores: Scores
    answers: list[list[int]]  # generated ids for each runnable needle prompt, in order


def target_job(path: Path, kind: str, ids: list[int], store: Path, prompts: list[list[int]],
               is_reference: bool) -> Outcome:
    """In the child: the target's logits over `ids` (saved to `store` for the reference, compared with it
    otherwise) and its greedy answers to `prompts`."""
    model = reference_model(path) if kind == "hf" else None
    logits = model_logits(model, ids) if model is not None else LOGITS[kind](path, ids)  # [seq, vocab]
    if is_reference:
        np.save(store, logits)
        scores = Scores(token_nll(logits, ids[1:]), None)
    else:
        scores = compare(logits, ids, store, path)
    del logits  # the answers' engine needs the memory more
    return Outcome(scores, greedy_answers(path, kind, prompts, model) if prompts else [])


def run_target(target: Target, ids: list[int], store: Path, cells: list[Cell], is_reference: bool) -> Outcome:
    prompts = [list(cell.prompt) for cell in runnable(target, cells)]
    doing = f"evaluating {target.path.name} ({len(ids)} tokens, {len(prompts)} needle prompts)"
    return run_isolated(target.engine, target.path, doing, ADVICE, target_job, target.path, target.kind, ids, store,
                        prompts, is_reference)
