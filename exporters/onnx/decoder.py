"""The whole decoder graph: I/O, embeddings, layers, final norm and LM head."""

from __future__ import annotations

from onnx import GraphProto, ModelProto, OperatorSetIdProto, TensorProto, ValueInfoProto, helper

from ...toolkit.spec import ModelSpec
from .attention import KV, attention_bias, self_attention
from .builder import FLOAT, INT64, GraphBuilder
from .dtypes import Precision
from .layers import linear, rms_norm, swiglu
from .moe import sparse_moe
from .params import Params
from .rope import Rotary, rotary_tables

# Graph I/O, as onnxruntime-genai and optimum name it. {i} is the layer index.
INPUT_IDS, ATTENTION_MASK, POSITION_IDS = "input_ids", "attention_mask", "position_ids"
PAST_KEY, PAST_VALUE = "past_key_values.{i}.key", "past_key_values.{i}.value"
LOGITS = "logits"
# Added by the ONNX Runtime backends (backends/ort/last_logits.py): how many last positions get logits (0: all).
LOGITS_TO_KEEP = "logits_to_keep"
PRESENT_KEY, PRESENT_VALUE = "present.{i}.key", "present.{i}.value"

# Dynamic axis names.
BATCH, SEQ, PAST_SEQ, TOTAL_SEQ = "batch_size", "sequence_length", "past_sequence_length", "total_sequence_length"


def _io(name: str, elem_type: int, shape: list) -> ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def _mlp(g: GraphBuilder, p: Params, spec: ModelSpec, x: str, layer: int, compute: int) -> str:
    if spec.is_moe_layer(layer):
        return sparse_moe(g, p, spec, x, layer, compute)
    return swiglu(g, x, p.matrix("ffn_gate", layer), p.matrix("ffn_up", layer), p.matrix("ffn_down", layer))


def _layer(g: GraphBuilder, p: Params, spec: ModelSpec, x: str, layer: int, rotary: Rotary, bias: str,
           compute: int) -> str:
    """One pre-norm decoder layer: x + attn(norm(x)), then h + mlp(norm(h)). x: [batch, seq, hidden]."""
    kv = KV(PAST_KEY.format(i=layer), PAST_VALUE.format(i=layer), PRESENT_KEY.format(i=layer),
            PRESENT_VALUE.format(i=layer))
    with g.scope(f"layers.{layer}"):
        with g.scope("input_layernorm"):
            h = rms_norm(g, x, p.tensor("attn_norm", layer), spec.rms_norm_eps, compute)
        x = g.op("Add", x, self_attention(g, p, spec, h, layer, rotary, bias, kv, compute))
        with g.scope("post_attention_layernorm"):
            h = rms_norm(g, x, p.tensor("ffn_norm", layer), spec.rms_norm_eps, compute)
        return g.op("Add", x, _mlp(g, p, spec, h, layer, compute))


def _lm_head(g: GraphBuilder, p: Params, spec: ModelSpec, x: str, embedding: str) -> str:
    """x: [batch, seq, hidden] → logits [batch, seq, vocab] (compute dtype)."""
    with g.scope("lm_head"):
        if not spec.tie_word_embeddings:
            return linear(g, x, p.matrix("output"))
        # Tied: Gemm reads the [vocab, hidden] embedding with transB, so the table is stored once.
        flat = g.reshape(x, [-1, spec.hidden_size])  # [batch * seq, hidden]
        logits = g.op("Gemm", flat, embedding, transB=1)  # [batch * seq, vocab]
        shape = g.op("Concat", g.op("Slice", g.op("Shape", x), g.const([0]), g.const([2])),
                     g.const([spec.vocab_size]), axis=0)
        return g.reshape(logits, shape)


def build_decoder(spec: ModelSpec, p: Params, g: GraphBuilder, precision: Precision) -> GraphProto:
    """Emit every node into `g` (weights stream out through `p` as they are first used)."""
    compute = precision.compute
    kv_shape = [BATCH, spec.num_kv_heads, PAST_SEQ, spec.head_dim]
    inputs = [_io(INPUT_IDS, INT64, [BATCH, SEQ]), _io(ATTENTION_MASK, INT64, [BATCH, TOTAL_SEQ]),
              _io(POSITION_IDS, INT64, [BATCH, SEQ])]
    outputs = [_io(LOGITS, FLOAT, [BATCH, SEQ, spec.vocab_size])]
    present_shape = [BATCH, spec.num_kv_heads, TOTAL_SEQ, spec.head_dim]
    for i in range(spec.num_layers):
        inputs += [_io(PAST_KEY.format(i=i), compute, kv_shape), _io(PAST_VALUE.format(i=i), compute, kv_shape)]
        outputs += [_io(PRESENT_KEY.format(i=i), compute, present_shape),
                    _io(PRESENT_VALUE.format(i=i), compute, present_shape)]

    embedding = p.tensor("token_embd")  # [vocab, hidden]
    x = g.op("Gather", embedding, INPUT_IDS, axis=0)  # [batch, seq, hidden]
    rotary = rotary_tables(g, spec, POSITION_IDS, compute)
    bias = attention_bias(g, INPUT_IDS, ATTENTION_MASK)  # [batch, 1, seq, total_seq]
    for layer in range(spec.num_layers):
        x = _layer(g, p, spec, x, layer, rotary, bias, compute)
    with g.scope("norm"):
        x = rms_norm(g, x, p.tensor("output_norm"), spec.rms_norm_eps, compute)
    logits = _lm_head(g, p, spec, x, embedding)
    # Logits leave the graph in fp32 whatever the compute dtype, so sampling code sees one type.
    if compute == FLOAT:
        g.op("Identity", logits, out=LOGITS)
    else:
        g.op("Cast", logits, to=FLOAT, out=LOGITS)
    return helper.make_graph(g.nodes, "qwdeploy_decoder", inputs, outputs)


def make_model(graph: GraphProto, initializers: list[TensorProto], opset: int) -> ModelProto:
    graph.initializer.extend(initializers)
    opsets = [OperatorSetIdProto(domain="", version=opset)]
    # The oldest IR version that carries the opset: readable by the widest range of runtimes.
    return helper.make_model(graph, opset_imports=opsets, producer_name="qwdeploy",
                             ir_version=helper.find_min_ir_version_for(opsets))
