"""A checkpoint in transformers behind the generation loop's Engine calls (prefill, step): the reference's
greedy answers come from the same loop as every artifact's."""

from __future__ import annotations

import numpy as np


class HfEngine:
    """A loaded model (toolkit.reference.reference_model) and the KV cache of one sequence."""

    def __init__(self, model):
        import torch

        self._torch, self._model = torch, model
        self.reset()
        self.context_length: int | None = model.config.max_position_embeddings

    def reserve(self, tokens: int) -> None:
        pass  # the cache grows with each call

    def _forward(self, ids: list[int]) -> np.ndarray:
        with self._torch.inference_mode():
            out = self._model(input_ids=self._torch.tensor([ids]), past_key_values=self._cache, use_cache=True,
                              logits_to_keep=1)
        return out.logits[0, -1].float().numpy()  # [vocab]

    def prefill(self, ids: list[int]) -> np.ndarray:
        return self._forward(ids)

    def step(self, token: int) -> np.ndarray:
        return self._forward([token])

    def reset(self) -> None:
        import transformers

        self._cache = transformers.DynamicCache()

    def close(self) -> None:
        self._cache = None
