"""Training is a function of its seed: the same seed gives the same weights, another seed others."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from qwdeploy.toolkit.errors import QwdeployError
from qwdeploy.toolkit.training import qwen_encode
from qwdeploy.toolkit.training.data import used_ids
from qwdeploy.toolkit.training.model import VOCAB_ROWS, expand_vocabulary
from qwdeploy.toolkit.training.pinned import X86, child_env, train_pinned
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


def test_training_runs_on_avx2_kernels_in_its_own_process():
    """What makes x86 CPUs agree: torch's kernels pinned to AVX2 (MKL and oneDNN likewise) in the child; other
    architectures run it unpinned, as they have one float path."""
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    run = subprocess.run([sys.executable, "-c", probe], env=child_env(), capture_output=True, text=True)
    if platform.machine() in X86:
        assert run.stdout.strip() == "AVX2", run.stderr
    else:
        assert child_env() == dict(os.environ)


def test_pinned_training_reports_every_step_and_repeats_itself():
    steps: list[int] = []
    first = train_pinned("qwen3", 0, STEPS, lambda step, loss: steps.append(step) if np.isfinite(loss) else None)
    assert steps == list(range(STEPS))
    second = train_pinned("qwen3", 0, STEPS)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_a_failed_training_child_is_one_line():
    with pytest.raises(QwdeployError, match=r"training qwen9 failed in its child process \(exit 1\): \w+"):
        train_pinned("qwen9", 0, STEPS)
