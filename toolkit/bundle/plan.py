"""Whether an artifact fits a device: weights + KV cache at a context + runtime overhead against the budget."""

from __future__ import annotations

from pathlib import Path

from ..profiles import DeviceProfile
from .manifest import MemoryPlan

DEFAULT_CONTEXT = 4096  # tokens of KV cache planned for when the artifact allows more
# An estimate, not a measurement of the device: compute buffers, the runtime's own code and arena.
OVERHEAD_BYTES = 256 * 2**20
OVERHEAD_SHARE = 0.10  # of the weights: scratch the runtimes size from the largest matrices


def artifact_facts(path: Path, kind: str) -> tuple[int, int, int | None]:
    """(weight bytes, KV bytes per token, context length or None) from the artifact's own headers."""
    if kind == "gguf":
        from ..runtimes.llamacpp.session import gguf_facts
        from ...exporters.gguf.reader import GGUFFile

        _, kv_per_token, context = gguf_facts(path)
        return sum(t.nbytes for t in GGUFFile(path).tensors.values()), kv_per_token, context
    from ..runtimes.ort.facts import read_graph

    facts = read_graph(path)
    return facts.weight_bytes, facts.kv_bytes_per_token, facts.context_length


def memory_plan(path: Path, kind: str, profile: DeviceProfile, context: int | None = None) -> MemoryPlan:
    return plan_for(*artifact_facts(path, kind), profile, context)


def plan_for(weights: int, kv_per_token: int, limit: int | None, profile: DeviceProfile,
             context: int | None = None) -> MemoryPlan:
    """Weights and a KV cache for `context` tokens (default: up to DEFAULT_CONTEXT of the model's `limit`)."""
    tokens = context or min(limit or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
    return MemoryPlan(weights=weights, kv_cache=kv_per_token * tokens, context=tokens,
                      runtime_overhead=OVERHEAD_BYTES + int(OVERHEAD_SHARE * weights),
                      budget=int(profile.memory.budget_gib * 2**30), budget_source=f"profile {profile.name}")


def describe(plan: MemoryPlan) -> str:
    mib = 2**20
    return (f"weights {plan.weights / mib:.1f} MiB + KV cache {plan.kv_cache / mib:.1f} MiB at {plan.context} tokens "
            f"+ runtime {plan.runtime_overhead / mib:.1f} MiB = {plan.total / mib:.1f} MiB of "
            f"{plan.budget / mib:.1f} MiB ({plan.budget_source})")
