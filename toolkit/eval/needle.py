"""Needle in a haystack: a passkey hidden at several depths of filler text, at several context lengths, scored
by exact greedy retrieval. The prompts are the trained demo checkpoint's own (toolkit.training), so its
retrieval is measured on the task it learned."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import QwdeployError
from ..training.data import KEY_DIGITS, needle_prompt, random_key
from .options import NeedleOptions

Encode = Callable[[str], Sequence[int]]
# Generated per cell: " ", one token per digit, and one more, so an answer running on past the key fails.
ANSWER_TOKENS = KEY_DIGITS + 2
MIN_CONTEXT = 64  # tokens: the needle and the question take about 35, the rest is filler


@dataclass(frozen=True)
class Cell:
    context: int  # the row: prompt and answer tokens together
    depth: float  # the column: 0 the first sentence, 1 the last before the question
    passkey: str
    prompt: tuple[int, ...]
    key_at: int  # index of the passkey's first digit in the prompt


def depth_fractions(depths: int) -> tuple[float, ...]:
    return tuple(np.linspace(0.0, 1.0, depths).tolist()) if depths > 1 else (0.5,)


def _find(sequence: tuple[int, ...], part: list[int]) -> int:
    return next(i for i in range(len(sequence) - len(part) + 1) if list(sequence[i:i + len(part)]) == part)


def cell(encode: Encode, context: int, depth: float, key: str, seed: int) -> Cell:
    text, _ = needle_prompt(encode, context - ANSWER_TOKENS, depth, key, seed)
    prompt = tuple(encode(text))
    return Cell(context, depth, key, prompt, _find(prompt, list(encode(key))))


def grid(encode: Encode, options: NeedleOptions) -> list[Cell]:
    """Every (context, depth) cell, contexts outer; one haystack per row, a key per cell."""
    if options.contexts[0] < MIN_CONTEXT:
        raise QwdeployError(f"--contexts {options.contexts[0]} is too short to hide a needle in filler text; "
                            f"use {MIN_CONTEXT} tokens or more")
    return [cell(encode, context, depth, random_key(np.random.default_rng([options.seed, context, column])),
                 options.seed)
            for context in options.contexts for column, depth in enumerate(depth_fractions(options.depths))]


def retrieved(answer: str, key: str) -> bool:
    """Exact retrieval: the answer's first number is the passkey, no more and no less."""
    match = re.match(r"\s*(\d+)", answer)
    return match is not None and match[1] == key
