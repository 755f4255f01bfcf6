"""The KV cache a decoder graph carries between calls: growing (a Concat per layer) or fixed buffers
(static graphs for ATC, backends/cann), fed and updated the same way by every caller."""

from __future__ import annotations

import numpy as np

from ...errors import QwdeployError
from ....exporters.onnx.decoder import LOGITS_TO_KEEP
from .facts import GraphFacts


class GrowingCache:
    """past_key_values.* grow by the tokens of each call; an attention_mask covers them all."""

    def __init__(self, facts: GraphFacts, batch: int, dtype: type):
        self.values = {name: np.zeros((batch, heads, 0, dim), dtype) for name, (heads, dim) in facts.past_inputs.items()}
        self.length = 0  # tokens already in the cache
        # onnxruntime-genai's builder derives positions from attention_mask and declares no position_ids.
        self.takes_positions = "position_ids" in facts.inputs
        self.slices_logits = LOGITS_TO_KEEP in facts.inputs  # qwdeploy's ORT graphs (backends/ort/last_logits.py)

    def feeds(self, ids: np.ndarray, last_only: bool = False) -> dict[str, np.ndarray]:
        """ids [batch, n] → the graph's inputs for them; last_only: logits of the last position only (where
        the graph can skip the others)."""
        batch, n = ids.shape
        feeds = {"input_ids": ids, "attention_mask": np.ones((batch, self.length + n), np.int64), **self.values}
        if self.takes_positions:
            feeds["position_ids"] = np.broadcast_to(np.arange(self.length, self.length + n, dtype=np.int64), (batch, n))
        if last_only and self.slices_logits:
            feeds[LOGITS_TO_KEEP] = np.ones(1, np.int64)
        return feeds

    def update(self, present: list[np.ndarray], n: int) -> None:
        self.values = dict(zip(self.values, present))
        self.length += n


class FixedCache(GrowingCache):
    """Buffers of the graph's fixed context; the graph writes each token at its position (batch 1)."""

    def __init__(self, facts: GraphFacts, batch: int, dtype: type):
        if batch != 1:
            raise QwdeployError(f"a static graph runs one sequence at a time, not a batch of {batch}")
        self.capacity = facts.static_context
        self.values = {name: np.zeros((1, heads, self.capacity, dim), dtype)
                       for name, (heads, dim) in facts.past_inputs.items()}
        self.length = 0

    def feeds(self, ids: np.ndarray, last_only: bool = False) -> dict[str, np.ndarray]:
        n = ids.shape[1]
        if self.length + n > self.capacity:
            raise QwdeployError(f"{self.length + n} tokens do not fit the static graph's {self.capacity} KV slots "
                                "(export with a larger -O context)")
        return {"input_ids": ids, "position_ids": np.arange(self.length, self.length + n, dtype=np.int64)[None],
                **self.values}


def new_cache(facts: GraphFacts, batch: int, dtype: type) -> GrowingCache:
    return (FixedCache if facts.static_context else GrowingCache)(facts, batch, dtype)
