"""GGUF files load in llama.cpp and compute what transformers computes."""

from __future__ import annotations

import pytest

pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")
pytest.importorskip("transformers")

from qwdeploy.exporters.gguf.exporter import export  # noqa: E402
from qwdeploy.exporters.gguf.verify import llama_logits  # noqa: E402
from qwdeploy.exporters.request import ExportRequest  # noqa: E402
from qwdeploy.toolkit.checkpoint import open_checkpoint  # noqa: E402
from qwdeploy.toolkit.metrics import agreement  # noqa: E402
from qwdeploy.toolkit.reference import prompt_ids, transformers_logits  # noqa: E402


@pytest.fixture(scope="session")
def reference(make_checkpoint):
    """arch → (ids, transformers' fp32 logits), computed once."""
    cache = {}

    def get(arch):
        if arch not in cache:
            directory = make_checkpoint(arch)
            ids = prompt_ids(directory)
            cache[arch] = ids, transformers_logits(directory, ids)
        return cache[arch]

    return get


def _agreement(make_checkpoint, reference, tmp_path, arch, quant):
    out = tmp_path / f"{arch}-{quant}.gguf"
    export(ExportRequest(open_checkpoint(make_checkpoint(arch)), out, quant=quant, verify=False,
                         show_progress=False))
    ids, ref = reference(arch)
    return agreement(ref, llama_logits(out, ids, threads=2))


def test_f32_matches_transformers(make_checkpoint, reference, tmp_path, arch):
    result = _agreement(make_checkpoint, reference, tmp_path, arch, "f32")
    # Same weights, f32 KV cache: only summation order differs (measured ~2e-5).
    assert result.max_abs < 2e-4, result.summary()
    assert result.top1 == 1.0


# (type, min top-1 agreement, max mean KL) on the 20-token verify prompt, all four architectures.
# MoE models lose more: a small change in router logits can swap an expert outright.
BOUNDS = {"f16": (0.95, 1e-3), "bf16": (0.9, 1e-2), "q8_0": (0.85, 0.2)}


@pytest.mark.parametrize("quant", sorted(BOUNDS))
def test_8_and_16_bit_types_agree(make_checkpoint, reference, tmp_path, arch, quant):
    result = _agreement(make_checkpoint, reference, tmp_path, arch, quant)
    top1, kl = BOUNDS[quant]
    assert result.top1 >= top1 and result.kl_mean <= kl, result.summary()


# Lower-bit types on random (outlier-free, untrained) weights: measured on qwen3 tiny
# q4_0 0.50/0.31, q4_k_m 0.75/0.09 (tiny rows fall back to q5_0/q8_0). Bounds leave margin.
LOW_BIT_BOUNDS = {"q4_0": (0.3, 0.8), "q4_1": (0.3, 0.8), "q5_0": (0.5, 0.3), "q5_1": (0.5, 0.3),
                  "q4_k_m": (0.4, 0.5), "q5_k_m": (0.5, 0.3), "q6_k": (0.6, 0.2)}


@pytest.mark.parametrize("quant", sorted(LOW_BIT_BOUNDS))
def test_low_bit_types_measured_and_bounded(make_checkpoint, reference, tmp_path, quant):
    result = _agreement(make_checkpoint, reference, tmp_path, "qwen3", quant)
    top1, kl = LOW_BIT_BOUNDS[quant]
    assert result.top1 >= top1 and result.kl_mean <= kl, result.summary()
