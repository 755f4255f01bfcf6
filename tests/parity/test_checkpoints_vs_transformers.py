"""The embedded-default checkpoints are real: transformers loads them and holds the same tensors."""

from __future__ import annotations

import numpy as np
import torch
import transformers

from qwdeploy.toolkit.checkpoint import open_checkpoint
from qwdeploy.toolkit.tensors import parameter_count


def test_transformers_loads_every_tensor_we_read(tiny):
    ckpt = open_checkpoint(tiny)
    expected = ckpt.validate()
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    state = model.state_dict()
    for tensor in expected:
        ours = ckpt.read(tensor.name, "float32")
        theirs = state[tensor.name].numpy()
        np.testing.assert_array_equal(ours, theirs, err_msg=tensor.name)
    assert parameter_count(ckpt.spec) == model.num_parameters()
    assert type(model).__name__ == ckpt.spec.architecture


def test_logits_are_peaked_not_uniform(tiny):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(tiny)
    ids = tok("The quick brown fox jumps over the lazy dog", return_tensors="pt").input_ids
    with torch.no_grad():
        probs = model(ids).logits.softmax(-1)
    # A uniform distribution over 151936 tokens would give 6.6e-6; trained models put far more on top-1.
    assert probs.max(-1).values.min().item() > 1e-3


def test_real_qwen_tokenizer_and_chat_template(make_checkpoint):
    tok = transformers.AutoTokenizer.from_pretrained(make_checkpoint("qwen2"))
    assert tok("Hello world").input_ids == [9707, 1879]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert tok.decode([9707, 1879]) == "Hello world"
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_sharded_checkpoint_loads_in_transformers(make_checkpoint):
    sharded = make_checkpoint("qwen3", max_shard_bytes=8 * 1024 * 1024)
    assert len(list(sharded.glob("model-*-of-*.safetensors"))) > 1
    model = transformers.AutoModelForCausalLM.from_pretrained(sharded, dtype=torch.float32)
    ckpt = open_checkpoint(sharded)
    for tensor in ckpt.validate():
        np.testing.assert_array_equal(ckpt.read(tensor.name, "float32"), model.state_dict()[tensor.name].numpy())
