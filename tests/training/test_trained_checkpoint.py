"""The trained demo checkpoints retrieve passkeys, model their text, load everywhere and export exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import transformers

from qwdeploy.exporters.gguf.exporter import export
from qwdeploy.exporters.gguf.verify import llama_logits
from qwdeploy.exporters.request import ExportRequest
from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.metrics import agreement
from qwdeploy.toolkit.reference import transformers_logits
from qwdeploy.toolkit.training import TRAINED_ARCHS, TRAINED_LENGTH, default_text, needle_prompt, qwen_encode
from qwdeploy.toolkit.training.data import TEXT_STREAM, sample_text, used_ids

DEPTHS = np.linspace(0.0, 1.0, 11)
KEYS_PER_DEPTH = 4


@pytest.fixture(scope="module", params=[pytest.param(arch, marks=[pytest.mark.long] if arch != "qwen2" else [])
                                        for arch in TRAINED_ARCHS])
def trained(request, trained_checkpoint):
    """(checkpoint directory, its transformers model in fp32)."""
    directory = trained_checkpoint(request.param)
    return directory, transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def retrieved(model, encode, prompt: str, answer: str) -> bool:
    """Whether greedy decoding over the full vocabulary continues `prompt` with `answer`: with the answer fed
    in, every answer token must be the argmax after its prefix (the same test as generating, in one pass)."""
    p, a = encode(prompt), encode(answer)
    with torch.no_grad():
        logits = model(torch.tensor([p + a])).logits[0, len(p) - 1:-1]  # [answer, vocab]
    return logits.argmax(-1).tolist() == a


def retrieval_rate(model, context: int) -> float:
    encode, hits = qwen_encode(), []
    for i, depth in enumerate(DEPTHS):
        for j in range(KEYS_PER_DEPTH):
            key = "".join(map(str, np.random.default_rng([context, i, j]).integers(10, size=5)))
            hits.append(retrieved(model, encode, *needle_prompt(encode, context, float(depth), key, seed=i * 10 + j)))
    return float(np.mean(hits))


def perplexity(model, ids: list[int], window: int = TRAINED_LENGTH) -> float:
    """exp(mean NLL) over the full vocabulary, in independent windows of the trained length."""
    nll = []
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start:start + window + 1]])
            logp = model(chunk[:, :-1]).logits[0].log_softmax(-1)  # [window, vocab]
            nll.append(-logp.gather(-1, chunk[0, 1:, None]))
    return math.exp(torch.cat(nll).mean().item())


def test_config_has_rope_scaling_and_loads_in_transformers(trained):
    directory, model = trained
    config = json.loads((directory / "config.json").read_text())
    assert config["rope_scaling"] == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TRAINED_LENGTH}
    assert config["max_position_embeddings"] == 4 * TRAINED_LENGTH and config["torch_dtype"] == "float32"
    assert model.config.rope_scaling["factor"] == 4.0
    assert open_checkpoint(directory).spec.rope_scaling.type == "yarn"


def test_retrieves_passkeys_at_every_depth(trained):
    _, model = trained
    assert retrieval_rate(model, TRAINED_LENGTH) >= 0.95
    encode = qwen_encode()
    prompt, answer = needle_prompt(encode, TRAINED_LENGTH, 0.3, "61840", seed=99)
    ids = torch.tensor([encode(prompt)])
    generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    assert generated[0, ids.shape[1]:].tolist() == encode(answer)


def test_perplexity_near_the_grammar_floor(trained, make_checkpoint):
    _, model = trained
    encode = qwen_encode()
    text = sample_text(0, 400, TEXT_STREAM)
    assert text.text == default_text()
    ids = encode(text.text)
    floor = math.exp(text.nats / len(ids))  # the grammar's own perplexity of this text: no model does better
    random = transformers.AutoModelForCausalLM.from_pretrained(make_checkpoint("qwen2"), dtype=torch.float32)
    ours = perplexity(model, ids)
    # A model that learned the grammar but not the sums pays log(19) nats per sum: 1/5 of the sentences, ~7.3
    # tokens each, so ~8% perplexity; windows that start cold pay ~1%. Learning the grammar means < 1.15x.
    assert floor <= ours < 1.15 * floor
    assert ours < len(used_ids(encode)) / 40  # uniform over the used tokens: ~160
    assert ours < perplexity(random.eval(), ids) / 1000


def test_gguf_f32_matches_transformers(trained, tmp_path):
    directory, _ = trained
    encode = qwen_encode()
    prompt, answer = needle_prompt(encode, TRAINED_LENGTH, 0.5, "27093", seed=7)
    ids = encode(prompt + answer)
    out = tmp_path / "trained-f32.gguf"
    export(ExportRequest(open_checkpoint(directory), out, quant="f32", verify=False, show_progress=False))
    ref, ours = transformers_logits(directory, ids), llama_logits(out, ids, threads=2)
    result = agreement(ref, ours)
    # Same f32 weights and rope scaling: only summation order differs.
    assert result.max_abs < 1e-3 and result.top1 == 1.0, result.summary()
