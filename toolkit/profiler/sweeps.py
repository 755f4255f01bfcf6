"""Hardware-aware sizing and cost: what fits a memory budget, and what a million tokens cost."""

from __future__ import annotations

from dataclasses import dataclass

from .contract import ArtifactInfo


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # "profile x86-server" or "host memory"


def kv_cache_bytes(info: ArtifactInfo, batch: int, context: int) -> int:
    return info.kv_bytes_per_token * batch * context


def fits(info: ArtifactInfo, budget: Budget, batch: int, context: int) -> bool:
    return info.weight_bytes + kv_cache_bytes(info, batch, context) <= budget.bytes


def fit(info: ArtifactInfo, budget: Budget, context: int, batch: int) -> dict:
    """Largest batch at `context` and largest context at `batch` whose weights + KV cache fit the budget."""
    free = budget.bytes - info.weight_bytes
    per_token = max(info.kv_bytes_per_token, 1)
    max_batch = max(free // (per_token * context), 0)
    max_context = max(free // (per_token * batch), 0)
    if info.context_length is not None:
        max_context = min(max_context, info.context_length)
    return {"budget_bytes": budget.bytes, "budget_source": budget.source, "weight_bytes": info.weight_bytes,
            "max_batch": int(max_batch), "at_context": context, "max_context": int(max_context), "at_batch": batch}


def usd_per_million_tokens(usd_per_hour: float | None, tokens_per_s: float) -> float | None:
    if not usd_per_hour or tokens_per_s <= 0:
        return None
    return usd_per_hour / 3600 / tokens_per_s * 1e6
