"""The KV cache a decoder graph carries between calls: growing (a Concat per layer, or GroupQueryAttention's
concatenating contract), one buffer per layer that past and present share (GroupQueryAttention on CPU), or
fixed buffers (static graphs for ATC, backends/cann), fed and updated the same way by every caller."""

from __future__ import annotations

import numpy as np

from ...errors import QwdeployError
from ....exporters.onnx.decoder import LOGITS_TO_KEEP
from .facts import GraphFacts

LOGITS = "logits"


def present_name(past: str) -> str:
    return past.replace("past_key_values", "present")


class GrowingCache:
    """past_key_values.* grow by the tokens of each call; an attention_mask covers them all."""

    def __init__(self, facts: GraphFacts, batch: int, dtype: type):
        self.values = {name: np.zeros((batch, heads, 0, dim), dtype) for name, (heads, dim) in facts.past_inputs.items()}
        self.length = 0  # tokens already in the cache
        # onnxruntime-genai's builder derives positions from attention_mask and declares no position_ids.
        self.takes_positions = "position_ids" in facts.inputs
        self.slices_logits = LOGITS_TO_KEEP in facts.inputs  # qwdeploy's ORT graphs (backends/ort/last_logits.py)

    def feeds(self, ids: np.ndarray, last_only: bool = False) -> dict[str, np.ndarray]:
        """ids [batch, n] → the graph's inputs for them, the cache's own left out; last_only: logits of the last
        position only (where the graph can skip the others)."""
        batch, n = ids.shape
        feeds = {"input_ids": ids, "attention_mask": np.ones((batch, self.length + n), np.int64)}
        if self.takes_positions:
            feeds["position_ids"] = np.tile(np.arange(self.length, self.length + n, dtype=np.int64), (batch, 1))
        if last_only and self.slices_logits:
            feeds[LOGITS_TO_KEEP] = np.ones(1, np.int64)
        return feeds

    def reserve(self, tokens: int) -> None:
        """Room for `tokens` in all, where the cache is allocated ahead (SharedCache); the others grow per call."""

    def run(self, session, ids: np.ndarray, last_only: bool = False) -> np.ndarray:
        """ids [batch, n] after what the cache holds → logits; the cache takes them in."""
        names = [LOGITS, *map(present_name, self.values)]
        logits, *present = session.run(names, {**self.feeds(ids, last_only), **self.values})
        self.values = dict(zip(self.values, present))
        self.length += ids.shape[1]
        return logits


class SharedCache(GrowingCache):
    """One buffer per past input, bound as both past and present (ONNX Runtime's past_present_share_buffer):
    GroupQueryAttention writes each call's keys and values in place instead of copying the whole cache into a
    fresh present, a copy that grows with the context (0.5B, 1,024 tokens: 121 -> 109 us per layer). The
    buffers double when a call would overflow them."""

    def __init__(self, facts: GraphFacts, batch: int, dtype: type, capacity: int):
        super().__init__(facts, batch, dtype)  # values: the buffers, [batch, heads, capacity, dim], :length filled
        self.capacity = 0
        self.binding, self.bound_to = None, None  # the buffers bound once per session; each call rebinds the rest
        self.reserve(capacity)

    def reserve(self, tokens: int) -> None:
        if tokens <= self.capacity:
            return
        self.capacity = max(tokens, 2 * self.capacity)
        for name, old in self.values.items():
            grown = np.zeros((*old.shape[:2], self.capacity, old.shape[3]), old.dtype)  # [batch, heads, capacity, dim]
            grown[:, :, :self.length] = old[:, :, :self.length]
            self.values[name] = grown
        self.binding = None

    def _bind(self, session):
        from onnxruntime import OrtValue

        if self.binding is None or self.bound_to is not session:
            self.binding, self.bound_to = session.io_binding(), session
            self.binding.bind_output(LOGITS)  # first: get_outputs() lists in binding order
            for name, array in self.values.items():
                buffer = OrtValue.ortvalue_from_numpy(array)  # shares the array's memory
                self.binding.bind_ortvalue_input(name, buffer)
                self.binding.bind_ortvalue_output(present_name(name), buffer)
        return self.binding

    def run(self, session, ids: np.ndarray, last_only: bool = False) -> np.ndarray:
        n = ids.shape[1]
        self.reserve(self.length + n)
        if last_only and self.slices_logits and n > 1:
            return self._run_prompt(session, ids)
        binding = self._bind(session)
        binding.bind_output(LOGITS)  # unallocated: a call's logits need not have the last call's shape
        for name, value in self.feeds(ids).items():  # one token's logits are its last anyway
            binding.bind_cpu_input(name, value)
        session.run_with_iobinding(binding)
        self.length += n
        return binding.get_outputs()[0].numpy()  # logits alone: copy_outputs_to_cpu would copy the whole cache too

    def _run_prompt(self, session, ids: np.ndarray) -> np.ndarray:
        # logits_to_keep is an overridable initializer, which IO binding cannot feed: a prompt that wants its
        # last logits only runs the concatenating way. Its past is the whole buffers (what lies after the
        # cached tokens is never read), so each present comes back as long and becomes the buffer: the cache
        # is never held twice, as it would be in a present copied into the buffers.
        logits, *present = session.run([LOGITS, *map(present_name, self.values)],
                                       {**self.feeds(ids, True), **self.values})
        self.values = dict(zip(self.values, present, strict=True))
        self.binding = None  # now, not at the next bind: it holds the old buffers, a second cache
        self.length += ids.shape[1]
        return logits


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
        return {"input_ids": ids, "position_ids": np.arange(self.length, self.length + n, dtype=np.int64)[None]}


def new_cache(facts: GraphFacts, batch: int, dtype: type, in_place: bool, capacity: int = 0) -> GrowingCache:
    """The cache the graph takes; in_place: past and present may share buffers (CPU), `capacity` tokens ahead."""
    if facts.static_context:
        return FixedCache(facts, batch, dtype)
    if in_place and facts.kv_in_place:
        return SharedCache(facts, batch, dtype, capacity)
    return GrowingCache(facts, batch, dtype)
