"""The training loop: seeded, single-process, on the CPU, a few minutes on two cores."""

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

DEFAULT_STEPS = 400
TOKENS_PER_STEP = 4096
# (sequence length, share of the steps): copying a key is learned first where little else competes for
# attention, in short sequences (batches of 64), then carried to the trained length.
CURRICULUM = ((64, 0.3), (128, 0.2), (256, 0.2), (TRAINED_LENGTH, 0.3))
THREADS = 2
LEARNING_RATE = 3e-3
WARMUP = 20
ANSWER_WEIGHT = 8.0  # the retrieved key is 5 tokens of 512: weigh it up so retrieval is learned early
ANSWER_TOKENS = 1 + KEY_DIGITS  # " " and one token per digit


@dataclass(frozen=True)
class Batch:
    ids: np.ndarray  # [batch, seq] compact ids
    weights: np.ndarray  # [batch, seq - 1] loss weight of each next-token target


def example(encode: Encode, rows: dict[int, int], length: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sequence: a needle prompt, its answer and a full stop, padded to `length`."""
    key = random_key(rng)
    prompt = haystack(encode, length - ANSWER_TOKENS - 1, rng.random(), key, rng)
    ids = [rows[i] for i in encode(f"{prompt} {key}.")]
    weights = np.zeros(length - 1, dtype=np.float32)
    weights[:len(ids) - 1] = 1.0
    answer = len(encode(prompt)) - 1  # target index of the answer's first token
    weights[answer:answer + ANSWER_TOKENS] = ANSWER_WEIGHT
    pad = rows[TOKEN_ID[ENDOFTEXT]]
    return np.array(ids + [pad] * (length - len(ids)), dtype=np.int64), weights


def lengths(steps: int) -> Iterator[int]:
    """The sequence length of each step, following CURRICULUM."""
    ends = np.cumsum([share for _, share in CURRICULUM]) * steps
    for step in range(steps):
        yield CURRICULUM[int(np.searchsorted(ends, step, side="right"))][0]


def batches(encode: Encode, rows: dict[int, int], seed: int, steps: int) -> Iterator[Batch]:
    rng = np.random.default_rng([TRAIN_STREAM, seed])
    for length in lengths(steps):
        ids, weights = zip(*(example(encode, rows, length, rng) for _ in range(TOKENS_PER_STEP // length)))
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
