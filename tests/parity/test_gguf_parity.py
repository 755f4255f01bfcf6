"""GGUF files load in llama.cpp and compute what transformers computes.

Bounds follow from what each type rounds. To first order the mean KL is half the variance of the logit
error, which is proportional to the variance of the rounding noise in the weights (and, in llama.cpp's
dot products, in the activations it converts to the weight's type, or to 8-bit blocks for quantized types).
Measured on the 20-token verify prompt (mean KL vs transformers fp32):
    f16   1.6e-6 .. 2.1e-6  (weights exact: the bf16 checkpoint fits f16; activations rounded to 2^-11)
    bf16  0.97e-4 .. 1.4e-4 (activations rounded to bf16, 2^-9: 16x f16's variance)
    q8_0  dense 3.2e-3, 3.9e-3 at every position 1e-3 .. 8e-3 (8-bit weights ≈ 2.0e-3 + 8-bit activations
          ≈ 1.5e-3, each measured alone); MoE: the same at most positions, but an expert swap at a near-tied
          router costs one position 0.10 (qwen2moe) or 1.8 (qwen3moe, then 0.01-0.12 while the KV cache
          carries it): mean 8.3e-3 and 0.11, median 3.4e-3 and 1.0e-2.
    q4_0 on qwen3: 0.305, and 0.304 for the same weights rounded by numpy (Q4_0's rule), so q4_0 is the
          plain round-to-nearest reference; one more bit quarters the noise: q5_0 0.070, q5_1 0.058.
"""

from __future__ import annotations

import json
import shutil

import gguf  # noqa: F401  (the dev install has gguf, llama-cpp-python and transformers: missing is a failure)
import llama_cpp  # noqa: F401
import numpy as np
import pytest
import torch
import transformers  # noqa: F401
from safetensors.torch import load_file, save_file

from qwdeploy.exporters.gguf.exporter import export
from qwdeploy.exporters.gguf.verify import llama_logits
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.metrics import agreement
from qwdeploy.toolkit.reference import prompt_ids, transformers_logits

MOE = ("qwen2moe", "qwen3moe")


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


def _logits(make_checkpoint, reference, tmp_path, arch, quant):
    out = tmp_path / f"{arch}-{quant}.gguf"
    export(ExportRequest(open_checkpoint(make_checkpoint(arch)), out, quant=quant, verify=False,
                         show_progress=False))
    ids, ref = reference(arch)
    return ref, llama_logits(out, ids, threads=2)


def _agreement(make_checkpoint, reference, tmp_path, arch, quant):
    return agreement(*_logits(make_checkpoint, reference, tmp_path, arch, quant))


def _kl_per_position(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    def log_softmax(x):
        x = x.astype(np.float64) - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(reference), log_softmax(candidate)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def test_f32_matches_transformers(make_checkpoint, reference, tmp_path, arch):
    result = _agreement(make_checkpoint, reference, tmp_path, arch, "f32")
    # Same weights, f32 KV cache: only summation order differs (measured ~2e-5).
    assert result.max_abs < 2e-4, result.summary()
    assert result.top1 == 1.0


# (type, min top-1 agreement, max mean KL) on the 20-token verify prompt, all four architectures.
# f16: 10x its measured KL and 5x below bf16's, so a file or a path that lost f16's precision fails.
# bf16: the 8-bit mantissa's rounding (2^-9/sqrt(3) relative) through the ~13 matrices between the embedding
# and the logits (std 3) predicts ~8e-5; bound 5e-4.
# q8_0: blocks of 32 with an fp16 scale amax/127, so the rounding error is at most amax/254 (uniform: variance
# amax^2/193548, 1/250 of Q4_0's); the same 8-bit blocks again for the activations. That predicts ~3e-3 per
# position; bound 1e-2 on the mean for dense models. In MoE an expert swap at a near-tied router is a discrete
# event (KL 0.1-1.8 at a position, measured) that 8-bit noise may trigger and the KV cache then carries, so
# there the bound applies to the median position (at most half the positions may carry a swap), at 2e-2.
BOUNDS = {"f16": (0.95, 2e-5), "bf16": (0.9, 5e-4), "q8_0": (0.85, 1e-2)}


@pytest.mark.parametrize("quant", sorted(BOUNDS))
def test_8_and_16_bit_types_agree(make_checkpoint, reference, tmp_path, arch, quant):
    ref, ours = _logits(make_checkpoint, reference, tmp_path, arch, quant)
    result = agreement(ref, ours)
    top1, kl = BOUNDS[quant]
    assert result.top1 >= top1, result.summary()
    if quant == "q8_0" and arch in MOE:
        median = float(np.median(_kl_per_position(ref, ours)))
        assert median <= 2 * kl, f"median KL {median:.2e}; {result.summary()}"
    else:
        assert result.kl_mean <= kl, result.summary()


def _round_blocks(w: np.ndarray, bits: int) -> np.ndarray:
    """Q4_0's and Q8_0's rounding of rows in blocks of 32 (fp16 scales), as plain numpy.
    Q4_0: the signed value of largest magnitude maps to -8, codes -8..7; Q8_0: amax maps to 127."""
    rows, cols = w.shape
    blocks = w.reshape(rows, cols // 32, 32).astype(np.float64)
    if bits == 8:
        scale = np.abs(blocks).max(-1, keepdims=True) / 127
        low, high = -127, 127
    else:
        scale = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1) / -8
        low, high = -8, 7
    codes = np.clip(np.rint(np.divide(blocks, scale, out=np.zeros_like(blocks), where=scale != 0)), low, high)
    return (codes * scale.astype(np.float16).astype(np.float64)).reshape(rows, cols).astype(np.float32)


@pytest.fixture(scope="module")
def plain_q4_0(make_checkpoint, reference, tmp_path_factory):
    """Agreement with fp32 of qwen3 with its weights rounded the plain way, as a q4_0 file rounds them: every
    matrix Q4_0, the embedding table and the LM head Q8_0 (qwdeploy's rule, like llama.cpp's), run in fp32."""
    folder = tmp_path_factory.mktemp("plain-q4_0") / "qwen3"
    shutil.copytree(make_checkpoint("qwen3"), folder)
    weights = load_file(str(folder / "model.safetensors"))
    edges = ("model.embed_tokens.weight", "lm_head.weight")
    rounded = {name: torch.from_numpy(_round_blocks(t.float().numpy(), 8 if name in edges else 4)
                                      if t.ndim == 2 else t.float().numpy()) for name, t in weights.items()}
    config = json.loads((folder / "config.json").read_text())
    # The embedding table and the LM head, and q, k, v, o, gate, up, down per layer: nothing left unrounded.
    assert sum(t.ndim == 2 for t in rounded.values()) == 2 + 7 * config["num_hidden_layers"]
    save_file(rounded, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}))
    ids, ref = reference("qwen3")
    return agreement(ref, transformers_logits(folder, ids))


# Lower-bit types on qwen3's random (outlier-free, untrained) weights, against the plain Q4_0 reference:
# (min top-1, bits the type's bulk matrices get on these 64-column rows). KL may be at most the reference's,
# quartered per bit above 4, with 5% slack at 4 bits (llama.cpp's 8-bit activations, measured +0.3%) and 50%
# above (edges kept at 8 bits and second-order terms; measured q5_0 0.91x, q5_1 0.77x, q4_k_m 1.12x, q5_k_m
# 1.05x of a quarter). K-quants need rows in multiples of 256: llama.cpp falls back to Q5_0 (Q4_K), Q5_1
# (Q5_K), Q8_0 (Q6_K), so q6_k is held to the q8_0 bound. Top-1: measured q4_0 0.50, q4_1 0.45, 5-bit 0.70-0.80.
LOW_BIT = {"q4_0": (0.3, 4), "q4_1": (0.3, 4), "q5_0": (0.5, 5), "q5_1": (0.5, 5), "q4_k_m": (0.5, 5),
           "q5_k_m": (0.5, 5), "q6_k": (0.85, 8)}


@pytest.mark.parametrize("quant", sorted(LOW_BIT))
def test_low_bit_types_measured_and_bounded(make_checkpoint, reference, plain_q4_0, tmp_path, quant):
    result = _agreement(make_checkpoint, reference, tmp_path, "qwen3", quant)
    top1, bits = LOW_BIT[quant]
    if bits == 8:
        max_kl = BOUNDS["q8_0"][1]
    else:
        max_kl = plain_q4_0.kl_mean * (1.05 if bits == 4 else 1.5) / 4 ** (bits - 4)
    assert result.top1 >= top1 and result.kl_mean <= max_kl, f"{result.summary()}; plain Q4_0 {plain_q4_0.summary()}"
