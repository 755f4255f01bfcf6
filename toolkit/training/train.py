"""The training loop: seeded, single-process, on the CPU; about eight minutes on two cores."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..tokenizer import ENDOFTEXT, TOKEN_ID
from .data import KEY_DIGITS, TRAIN_STREAM, Encode, haystack, random_key
from .model import TRAINED_LENGTH, compact_model, sink_offset, trained_config

Progress = Callable[[int, float], None]  # (step, loss) after each step

DEFAULT_STEPS = 1700
TOKENS_PER_STEP = 4096


@dataclass(frozen=True)
class Phase:
    length: int  # tokens per sequence
    share: float  # of the steps
    copying: float  # share of the sequences that are copy drills rather than text with a needle


# Retrieval needs an induction circuit (find the earlier occurrence of this token, copy what followed it),
# which forms late and suddenly when copying is a few tokens in hundreds; copy drills, where a span of random
# ids repeats right after itself, grow it first. Then text with needles, carried to the trained length.
CURRICULUM = (Phase(64, 0.4, 1.0), Phase(128, 0.3, 0.3), Phase(TRAINED_LENGTH, 0.3, 0.2))
THREADS = 2
LEARNING_RATE = 3e-3
WARMUP = 20
ANSWER_WEIGHT = 8.0  # the retrieved key is 5 tokens of 512: weigh it up so retrieval is learned early
EDGE_DEPTHS = 0.2  # share of the needles placed first or last
ANSWER_TOKENS = 1 + KEY_DIGITS  # " " and one token per digit


@dataclass(frozen=True)
class Batch:
    ids: np.ndarray  # [batch, seq] compact ids
    weights: np.ndarray  # [batch, seq - 1] loss weight of each next-token target


def example(encode: Encode, rows: dict[int, int], length: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sequence: a needle prompt (some questions already answered inside), its answer and a
    full stop, padded to `length`. Every answer is weighted; the needle's own two keys are not predictable."""
    key = random_key(rng)
    asked = int(rng.integers(0, 2 + length // 128))
    # Keys in the first or last sentence get many times a uniform depth's share: with depths drawn uniformly,
    # the keys the model missed were in the first sentence.
    depth = float(rng.choice([0.0, 1.0])) if rng.random() < EDGE_DEPTHS else rng.random()
    prompt = haystack(encode, length - ANSWER_TOKENS - 1, depth, key, rng, asked)
    tokens = encode(f"{prompt} {key}.")
    weights = np.zeros(length - 1, dtype=np.float32)
    weights[:len(tokens) - 1] = 1.0
    answer = encode(f" {key}")
    starts = [i for i in range(len(tokens)) if tokens[i:i + len(answer)] == answer]
    for start in starts[2:]:
        weights[start - 1:start - 1 + len(answer)] = ANSWER_WEIGHT
    ids = [rows[i] for i in tokens] + [rows[TOKEN_ID[ENDOFTEXT]]] * (length - len(tokens))
    return np.array(ids, dtype=np.int64), weights


def copy_drill(rows: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random ids in which a span of random length and place repeats right after itself; only the repeat's
    tokens (after its first) are scored, and only an induction circuit predicts them."""
    span = int(rng.integers(6, length // 3))
    start = int(rng.integers(0, length - 2 * span + 1))
    ids = rng.integers(0, rows, size=length)
    ids[start + span:start + 2 * span] = ids[start:start + span]
    weights = np.zeros(length - 1, dtype=np.float32)
    weights[start + span:start + 2 * span - 1] = 1.0
    return ids, weights


def phases(steps: int) -> Iterator[Phase]:
    """The phase of each step, following CURRICULUM."""
    ends = np.cumsum([phase.share for phase in CURRICULUM]) * steps
    for step in range(steps):
        yield CURRICULUM[int(np.searchsorted(ends, step, side="right"))]


def batches(encode: Encode, rows: dict[int, int], seed: int, steps: int) -> Iterator[Batch]:
    rng = np.random.default_rng([TRAIN_STREAM, seed])
    for phase in phases(steps):
        ids, weights = zip(*(copy_drill(len(rows), phase.length, rng) if rng.random() < phase.copying
                             else example(encode, rows, phase.length, rng)
                             for _ in range(TOKENS_PER_STEP // phase.length)))
        yield Batch(np.stack(ids), np.stack(weights))


def learning_rate(step: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < WARMUP:
        return LEARNING_RATE * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, steps - WARMUP)
    return LEARNING_RATE * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded torch with a fixed thread count, the caller's RNG and settings restored afterwards."""
    import torch

    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(THREADS)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(strict)


def weighted_loss(model, batch: Batch, sink: float):
    import torch

    ids = torch.from_numpy(batch.ids)
    logits = model(input_ids=ids).logits[:, :-1]  # [batch, seq - 1, rows]
    logits = torch.cat([logits[..., :-1], logits[..., -1:] + sink], dim=-1)
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # [batch, seq - 1]
    weights = torch.from_numpy(batch.weights)
    return (losses * weights).sum() / weights.sum()


def train(arch: str, encode: Encode, used_ids: list[int], seed: int = 0, steps: int = DEFAULT_STEPS,
          progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Train the compact model (used ids + sink row) and return its float32 state."""
    import torch

    rows = {token: i for i, token in enumerate(used_ids)}
    with deterministic(seed):
        model = compact_model(trained_config(arch), len(used_ids) + 1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.95), weight_decay=0.01)
        sink = sink_offset(len(used_ids))
        for step, batch in enumerate(batches(encode, rows, seed, steps)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, steps)
            loss = weighted_loss(model, batch, sink)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if progress is not None:
                progress(step, loss.item())
        return {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}
