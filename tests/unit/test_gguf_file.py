"""What the GGUF exporter writes, read back with gguf-py: tensors, types, metadata, tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

import gguf

from qwdeploy.exporters.gguf.exporter import export  # noqa: E402
from qwdeploy.exporters.gguf.plan import plan_tensors  # noqa: E402
from qwdeploy.exporters.gguf.reader import GGUFFile  # noqa: E402
from qwdeploy.exporters.gguf.quant import quant_type  # noqa: E402
from qwdeploy.exporters.request import ExportRequest  # noqa: E402
from qwdeploy.toolkit.checkpoint import open_checkpoint  # noqa: E402

# Relative RMS error a stored type may add to Gaussian-like weights (theory: step / sqrt(12) per block).
RMS_BOUNDS = {"F32": 0.0, "F16": 1e-3, "BF16": 5e-3, "Q8_0": 0.01, "Q5_0": 0.05, "Q5_1": 0.04,
              "Q4_0": 0.11, "Q4_1": 0.08}
TYPES = ["f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1"]


def _export(ckpt_dir, tmp_path, quant, **kwargs):
    out = tmp_path / f"{quant}.gguf"
    export(ExportRequest(open_checkpoint(ckpt_dir), out, quant=quant, verify=False, show_progress=False, **kwargs))
    return GGUFFile(out)


def _source(ckpt, planned):
    arrays = [ckpt.read(name, "float32") for name in planned.sources]
    return (np.stack(arrays) if len(arrays) > 1 else arrays[0]).reshape(planned.shape)


@pytest.mark.parametrize("quant", TYPES)
def test_every_tensor_round_trips_within_its_type_error(make_checkpoint, tmp_path, quant):
    ckpt_dir = make_checkpoint("qwen2moe")  # experts, shared expert, biases, untied head
    reader = _export(ckpt_dir, tmp_path, quant)
    ckpt = open_checkpoint(ckpt_dir)
    planned = {t.name: t for t in plan_tensors(ckpt.validate(), quant_type(quant).tensor_type)}
    assert set(reader.tensors) == set(planned)
    for name, tensor in reader.tensors.items():
        assert tensor.qtype == planned[name].qtype and tensor.shape == planned[name].shape, name
        got = gguf.quants.dequantize(reader.raw(name), tensor.qtype).reshape(tensor.shape)
        want = _source(ckpt, planned[name])
        rel = np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2))
        bound = RMS_BOUNDS[tensor.qtype.name]
        assert rel <= bound, f"{name} ({tensor.qtype.name}): relative RMS error {rel:.3g} > {bound}"


def _field(reader, key):
    if isinstance(reader, GGUFFile):
        return reader.metadata[key]
    field = reader.get_field(key)
    assert field is not None, key
    return field.contents()


def test_metadata_matches_the_spec(make_checkpoint, tmp_path):
    ckpt_dir = make_checkpoint("qwen3moe")
    spec = open_checkpoint(ckpt_dir).spec
    _export(ckpt_dir, tmp_path, "q8_0")
    reader = gguf.GGUFReader(tmp_path / "q8_0.gguf")  # gguf-py's own reader: an independent parse
    expected = {
        "general.architecture": "qwen3moe",
        "general.file_type": int(gguf.LlamaFileType.MOSTLY_Q8_0),
        "general.quantization_version": gguf.GGML_QUANT_VERSION,
        "qwen3moe.context_length": spec.max_position_embeddings,
        "qwen3moe.embedding_length": spec.hidden_size,
        "qwen3moe.block_count": spec.num_layers,
        "qwen3moe.attention.head_count": spec.num_heads,
        "qwen3moe.attention.head_count_kv": spec.num_kv_heads,
        "qwen3moe.attention.key_length": spec.head_dim,
        "qwen3moe.attention.value_length": spec.head_dim,
        "qwen3moe.expert_count": spec.moe.num_experts,
        "qwen3moe.expert_used_count": spec.moe.top_k,
        "qwen3moe.expert_feed_forward_length": spec.moe.moe_intermediate_size,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2",
        "tokenizer.ggml.bos_token_id": 151643,
        "tokenizer.ggml.eos_token_id": 151645,
        "tokenizer.ggml.padding_token_id": 151643,
        "tokenizer.ggml.add_bos_token": False,
    }
    for key, value in expected.items():
        assert _field(reader, key) == value, key
    assert _field(reader, "qwen3moe.rope.freq_base") == pytest.approx(spec.rope_theta)
    assert _field(reader, "qwen3moe.attention.layer_norm_rms_epsilon") == pytest.approx(spec.rms_norm_eps)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == spec.vocab_size
    assert tokens[9707] == "Hello" and tokens[151644] == "<|im_start|>"
    assert types[151644] == gguf.TokenType.CONTROL and types[151657] == gguf.TokenType.USER_DEFINED
    assert types[151935] == gguf.TokenType.UNUSED and types[9707] == gguf.TokenType.NORMAL
    assert "<|im_start|>" in _field(reader, "tokenizer.chat_template")
    experts = {t.name: t for t in reader.tensors}["blk.0.ffn_gate_exps.weight"]
    assert list(experts.shape) == [spec.hidden_size, spec.moe.moe_intermediate_size, spec.moe.num_experts]


def test_qwen2moe_shared_expert_keys(make_checkpoint, tmp_path):
    ckpt_dir = make_checkpoint("qwen2moe")
    reader = _export(ckpt_dir, tmp_path, "f16")
    spec = open_checkpoint(ckpt_dir).spec
    assert _field(reader, "qwen2moe.expert_shared_feed_forward_length") == spec.moe.shared_expert_intermediate_size
    gate = reader.tensors["blk.1.ffn_gate_inp_shexp.weight"]
    assert gate.qtype == gguf.GGMLQuantizationType.F32 and gate.shape == (1, spec.hidden_size)
    assert "blk.0.attn_q.bias" in reader.tensors


def test_qwen2moe_shared_expert_gate_is_2d_as_llama_cpp_converts_it(make_checkpoint, tmp_path):
    """convert_hf_to_gguf.py keeps Hugging Face's [1, hidden]: GGUF ne [hidden, 1], two dimensions."""
    ckpt_dir = make_checkpoint("qwen2moe")
    _export(ckpt_dir, tmp_path, "q8_0")
    hidden = open_checkpoint(ckpt_dir).spec.hidden_size
    gates = [t for t in gguf.GGUFReader(tmp_path / "q8_0.gguf").tensors if t.name.endswith("ffn_gate_inp_shexp.weight")]
    assert gates and all(t.shape.tolist() == [hidden, 1] for t in gates)  # gguf-py lists every stored dim


# Tensor names and shapes (numpy order) of the tiny dense checkpoints, in file order, as written before the names
# came from gguf-py: that change and the Qwen2-MoE gate's must leave dense files as they were.
DENSE_TABLES = {
    "qwen2": (
        [("token_embd.weight", (151936, 64))],
        [("attn_norm.weight", (64,)), ("attn_q.weight", (64, 64)), ("attn_k.weight", (32, 64)),
         ("attn_v.weight", (32, 64)), ("attn_q.bias", (64,)), ("attn_k.bias", (32,)), ("attn_v.bias", (32,)),
         ("attn_output.weight", (64, 64)), ("ffn_norm.weight", (64,)), ("ffn_gate.weight", (160, 64)),
         ("ffn_up.weight", (160, 64)), ("ffn_down.weight", (64, 160))],
        [("output_norm.weight", (64,))],
    ),
    "qwen3": (
        [("token_embd.weight", (151936, 64))],
        [("attn_norm.weight", (64,)), ("attn_q.weight", (128, 64)), ("attn_k.weight", (64, 64)),
         ("attn_v.weight", (64, 64)), ("attn_q_norm.weight", (32,)), ("attn_k_norm.weight", (32,)),
         ("attn_output.weight", (64, 128)), ("ffn_norm.weight", (64,)), ("ffn_gate.weight", (160, 64)),
         ("ffn_up.weight", (160, 64)), ("ffn_down.weight", (64, 160))],
        [("output_norm.weight", (64,)), ("output.weight", (151936, 64))],
    ),
}


@pytest.mark.parametrize("family", sorted(DENSE_TABLES))
def test_dense_tensor_table_is_unchanged(make_checkpoint, tmp_path, family):
    ckpt_dir = make_checkpoint(family)
    reader = _export(ckpt_dir, tmp_path, "f16")
    head, layer, tail = DENSE_TABLES[family]
    layers = open_checkpoint(ckpt_dir).spec.num_layers
    want = head + [(f"blk.{i}.{name}", shape) for i in range(layers) for name, shape in layer] + tail
    assert [(t.name, t.shape) for t in reader.tensors.values()] == want


def test_tied_embeddings_write_no_output_tensor(make_checkpoint, tmp_path):
    reader = _export(make_checkpoint("qwen2"), tmp_path, "f16")
    assert "token_embd.weight" in reader.tensors and "output.weight" not in reader.tensors


def test_profile_picks_the_type(make_checkpoint, tmp_path):
    from qwdeploy.toolkit.profiles import load_profile

    reader = _export(make_checkpoint("qwen3"), tmp_path, None, profile=load_profile("ascend-310b"))
    assert _field(reader, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q4_0)
