"""SharedCache (toolkit/runtimes/ort/cache.py): past and present bound to one buffer per layer give the logits
the concatenating cache gives, through prompts (whose presents become the buffers), a multi-token chunk and
single steps, across the buffers' growth; graphs whose cache does not feed GroupQueryAttention alone keep the
concatenating cache."""

import numpy as np
import pytest

from qwdeploy.toolkit.runtimes.ort.cache import GrowingCache, SharedCache
from qwdeploy.toolkit.runtimes.ort.session import OrtSession

# (tokens, last_only): a prompt, a chunk, a second prompt after them (a chat's next turn), steps
CALLS = [(9, True), (3, False), (4, True), (1, True), *[(1, False)] * 5]


@pytest.mark.parametrize("arch_quant", [("qwen2", "int4"), ("qwen3", "fp32")], ids="-".join)
def test_shared_buffers_give_the_concatenating_logits(exported, arch_quant):
    session = OrtSession(exported(arch_quant[0], "cpu", arch_quant[1]), "CPUExecutionProvider", 1, {})
    assert session.facts.kv_in_place and isinstance(session.new_cache(2), SharedCache)
    growing = GrowingCache(session.facts, 2, session.kv_dtype)  # int4: a float16 cache, fp32: float32
    shared = SharedCache(session.facts, 2, session.kv_dtype, capacity=4)  # grows three times on the way
    rng = np.random.default_rng(0)
    for tokens, last_only in CALLS:
        ids = rng.integers(0, session.facts.vocab_size, size=(2, tokens), dtype=np.int64)  # [batch, tokens]
        want = growing.run(session.session, ids, last_only)
        got = shared.run(session.session, ids, last_only)
        assert got.shape == want.shape and np.abs(want).max() > 1.0
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    total = sum(tokens for tokens, _ in CALLS)
    assert shared.length == total and shared.capacity >= total
    for name, values in growing.values.items():
        assert shared.values[name].dtype == values.dtype
        np.testing.assert_allclose(shared.values[name][:, :, :total], values, atol=1e-6)


def test_a_concatenating_graph_keeps_the_growing_cache(exported):
    session = OrtSession(exported("qwen2"), "CPUExecutionProvider", 1, {})
    assert not session.facts.kv_in_place
    assert type(session.new_cache(1)) is GrowingCache

