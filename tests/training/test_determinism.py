"""Training is a function of its seed: the same seed gives the same weights, another seed others."""

from __future__ import annotations

import numpy as np
import torch

from qwdeploy.toolkit.training import qwen_encode
from qwdeploy.toolkit.training.data import used_ids
from qwdeploy.toolkit.training.model import VOCAB_ROWS, expand_vocabulary
from qwdeploy.toolkit.training.train import train

STEPS = 2


def _train(seed: int) -> dict[str, np.ndarray]:
    encode = qwen_encode()
    return train("qwen3", encode, used_ids(encode), seed=seed, steps=STEPS)


def test_same_seed_same_weights_and_the_callers_torch_state_is_kept():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = _train(0)
    assert torch.equal(torch.rand(3), expected_draw)  # our seeding did not touch the caller's generator
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    second = _train(0)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    other = _train(1)
    assert not np.array_equal(first["model.layers.0.self_attn.q_proj.weight"],
                              other["model.layers.0.self_attn.q_proj.weight"])


def test_unused_ids_share_the_sink_row():
    encode = qwen_encode()
    used = used_ids(encode)
    compact = {name: np.arange(2 * (len(used) + 1), dtype=np.float32).reshape(-1, 2) for name in VOCAB_ROWS}
    full = expand_vocabulary({**compact, "model.norm.weight": np.ones(2, np.float32)}, used)
    for name in VOCAB_ROWS:
        np.testing.assert_array_equal(full[name][used], compact[name][:-1])
        unused = np.setdiff1d(np.arange(len(full[name])), used)
        assert (full[name][unused] == compact[name][-1]).all()
    assert full["model.norm.weight"].shape == (2,)
