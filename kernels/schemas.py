"""The `qwdeploy` custom-op domain: one schema per fused op, shared by fusion passes and kernels.

Fusion passes (backends/*/fusions) build nodes from these names; the C++/CUDA adapters in
kernels/ register exactly these inputs, outputs and attributes (their I/O tables, kernels/ort/schema_io.h,
are rendered from this file by kernels/schema_header.py); the numpy references in kernels/reference.py
define their meaning. Optional inputs may be passed as "" (ONNX convention).

Every floating-point input and output is float32, except the block scales of QuantLinear, QuantSwiGLU and
QuantGather (float32 or float16, read as stored: decode streams half the scale bytes) and GroupQueryAttention's
KV cache (float32 or float16, stored as such); no kernel computes in float16, so a float16 graph (the cuda
backend's) cannot use this domain. backends/ort/check.py refuses a node whose graph says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOMAIN = "qwdeploy"
DOMAIN_VERSION = 1


@dataclass(frozen=True)
class Arg:
    name: str
    shape: str  # symbolic, for docs and checks
    dtype: str  # numpy's name of the element type: "float32", "float16", "uint8", "int32" or "int64"; "a|b": either
    optional: bool = False

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.dtype.split("|"))


@dataclass(frozen=True)
class OpSchema:
    name: str
    inputs: tuple[Arg, ...]
    outputs: tuple[Arg, ...]
    attributes: dict[str, str]  # name -> "int" | "float", with meaning in the docstring
    doc: str
    optional_attributes: dict[str, str] = field(default_factory=dict)  # as attributes; a node may leave them off


# The residual add and RMSNorm QuantLinear and QuantSwiGLU may take in front of their product, so a decoder
# layer's SkipSimplifiedLayerNormalization needs no node of its own.
NORM_INPUTS = (
    Arg("skip", "[..., K]", "float32", optional=True),
    Arg("norm_weight", "[K]", "float32", optional=True),
)
NORM_OUTPUTS = (Arg("sum", "[..., K]", "float32", optional=True),)
NORM_ATTRIBUTES = {"epsilon": "float"}
NORM_DOC = (" With norm_weight the product takes RMSNorm(X + skip) instead of X: s = X + skip (X without skip), "
            "X' = s * (1 / sqrt(mean(s^2 over K) + epsilon)) * norm_weight, the mean of squares summed in float64 "
            "and rounded to float32, the rest float32 (epsilon defaults to 1e-5, SimplifiedLayerNormalization's); "
            "the sum output, which needs skip, is s: the residual stream SkipSimplifiedLayerNormalization returns. "
            "CPU only: the CUDA QuantSwiGLU refuses a norm.")

SCHEMAS = {
    s.name: s
    for s in (
        OpSchema(
            "SwiGLU",
            inputs=(Arg("gate_up", "[..., 2*I]", "float32"),),
            outputs=(Arg("Y", "[..., I]", "float32"),),
            attributes={},
            doc="Y = silu(gate_up[..., :I]) * gate_up[..., I:] (gate first, as a packed gate/up MatMul emits).",
        ),
        OpSchema(
            "QuantSwiGLU",
            inputs=(
                Arg("X", "[..., K]", "float32"),
                Arg("B", "[2*I, K/block_size, block_size*bits/8]", "uint8"),
                Arg("scales", "[2*I * K/block_size]", "float32|float16"),
                Arg("zero_points", "[2*I * ceil(K/block_size*bits/8)]", "uint8", optional=True),
                *NORM_INPUTS,
            ),
            outputs=(Arg("Y", "[..., I]", "float32"), *NORM_OUTPUTS),
            attributes={"K": "int", "N": "int", "bits": "int", "block_size": "int", "accuracy_level": "int",
                        "row_tile": "int"},
            optional_attributes=NORM_ATTRIBUTES,
            doc="Packed gate/up projection on block-quantized weights (ONNX Runtime's MatMulNBits layout, "
            "N = 2*I rows, gate rows first; accuracy_level and row_tile as QuantLinear's, I a multiple of the "
            "tile) followed by SwiGLU; the [.., 2*I] intermediate never reaches memory." + NORM_DOC,
        ),
        OpSchema(
            "QuantLinear",
            inputs=(
                Arg("X", "[..., K]", "float32"),
                Arg("B", "[N, K/block_size, block_size*bits/8]", "uint8"),
                Arg("scales", "N * K/block_size elements, any shape", "float32|float16"),
                Arg("zero_points", "N * ceil(K/block_size*bits/8) elements, any shape", "uint8", optional=True),
                Arg("bias", "[N]", "float32", optional=True),
                *NORM_INPUTS,
            ),
            outputs=(Arg("Y", "[..., N]", "float32"), *NORM_OUTPUTS),
            attributes={"K": "int", "N": "int", "bits": "int", "block_size": "int", "accuracy_level": "int",
                        "row_tile": "int"},
            optional_attributes=NORM_ATTRIBUTES,
            doc="Y = X @ W^T + bias with W block-quantized in ONNX Runtime's MatMulNBits layout; B, scales and "
            "zero points are MatMulNBits' own tensors, read where they lie (no prepacked copy). accuracy_level "
            "as MatMulNBits', a permission rather than a demand: at 4 the CPU kernels quantize X to int8 per block "
            "(scale max|x|/127, round to nearest even) for integer dot products per block, then apply both scales; "
            "at 0, and on CUDA at any level, they compute in float. row_tile 4 (CPU only): B's rows in tiles "
            "of 4, their bytes interleaved 64 at a time and the rows padded to whole tiles, so decode streams "
            "each tile as one range (kernels/quantize.py tile_rows); 1: rows in order." + NORM_DOC,
        ),
        OpSchema(
            "Linear",
            inputs=(
                Arg("X", "[..., K]", "float32"),
                Arg("W", "[N, K]", "float32"),
                Arg("bias", "[N]", "float32", optional=True),
            ),
            outputs=(Arg("Y", "[..., N]", "float32"),),
            attributes={},
            doc="Y = X @ W^T + bias with W in float32 as stored, [N, K] (Gemm's transB layout), read where it "
            "lies: a tied LM head multiplies by the embedding table the lookup reads, and ONNX Runtime's Gemm "
            "would prepack a private copy of it (the table's size again, 545 MB for Qwen2.5-0.5B) while the "
            "lookup keeps the original mapped.",
        ),
        OpSchema(
            "QuantGather",
            inputs=(
                Arg("data", "[N, K/block_size, block_size*bits/8]", "uint8"),
                Arg("indices", "[...]", "int64"),
                Arg("scales", "N * K/block_size elements, any shape", "float32|float16"),
                Arg("zero_points", "N * ceil(K/block_size*bits/8) elements, any shape", "uint8", optional=True),
            ),
            outputs=(Arg("Y", "[..., K]", "float32"),),
            attributes={"K": "int", "N": "int", "bits": "int", "block_size": "int", "row_tile": "int"},
            doc="Y[i] = row indices[i] of the block-quantized table W (QuantLinear's layout and attributes, "
            "row tiles included), dequantized: (q - zero_point) * scale per block; indices in [-N, N), a "
            "negative one counting from the end. A tied LM head's QuantLinear and the embedding lookup read "
            "one tensor, so that table can take QuantLinear's row tiles and float16 scales.",
        ),
        OpSchema(
            "MoE",
            inputs=(
                Arg("X", "[tokens, H]", "float32"),
                Arg("router_logits", "[tokens, E]", "float32"),
                Arg("gate_up_weights", "[E, 2*I, H]", "float32"),
                Arg("down_weights", "[E, H, I]", "float32"),
                Arg("shared_gate_up", "[2*S, H]", "float32", optional=True),
                Arg("shared_down", "[H, S]", "float32", optional=True),
                Arg("shared_gate", "[1, H]", "float32", optional=True),
            ),
            outputs=(Arg("Y", "[tokens, H]", "float32"),),
            attributes={"top_k": "int", "normalize_topk": "int"},
            doc="softmax(router_logits) in fp32, top-k, optional renormalisation, SwiGLU experts computed only "
            "for the tokens routed to them, weighted sum; plus the Qwen2-MoE shared expert scaled by "
            "sigmoid(X @ shared_gate^T) when given.",
        ),
        OpSchema(
            "QMoE",
            inputs=(
                Arg("X", "[tokens, H]", "float32"),
                Arg("router_logits", "[tokens, E]", "float32"),
                Arg("gate_up_weights", "[E, 2*I, H/block_size, block_size*bits/8]", "uint8"),
                Arg("gate_up_scales", "[E, 2*I, H/block_size]", "float32"),
                Arg("down_weights", "[E, H, I/block_size, block_size*bits/8]", "uint8"),
                Arg("down_scales", "[E, H, I/block_size]", "float32"),
                Arg("shared_gate_up", "[2*S, H]", "float32", optional=True),
                Arg("shared_down", "[H, S]", "float32", optional=True),
                Arg("shared_gate", "[1, H]", "float32", optional=True),
            ),
            outputs=(Arg("Y", "[tokens, H]", "float32"),),
            attributes={"top_k": "int", "normalize_topk": "int", "bits": "int", "block_size": "int"},
            doc="MoE with symmetric block-quantized expert weights (int4 packed low nibble first, or int8; "
            "value = (q - 2^(bits-1)) * scale).",
        ),
        OpSchema(
            "QKNormRotary",
            inputs=(
                Arg("Q", "[batch, seq, num_heads*head_dim]", "float32"),
                Arg("K", "[batch, seq, kv_num_heads*head_dim]", "float32"),
                Arg("q_norm_weight", "[head_dim]", "float32"),
                Arg("k_norm_weight", "[head_dim]", "float32"),
                Arg("position_ids", "[batch, seq]", "int64"),
                Arg("cos_cache", "[max_positions, head_dim/2]", "float32"),
                Arg("sin_cache", "[max_positions, head_dim/2]", "float32"),
            ),
            outputs=(Arg("Q_out", "[batch, seq, num_heads*head_dim]", "float32"),
                     Arg("K_out", "[batch, seq, kv_num_heads*head_dim]", "float32")),
            attributes={"num_heads": "int", "kv_num_heads": "int", "epsilon": "float"},
            doc="Qwen3's per-head RMSNorm of q and k (over head_dim) followed by rotary embedding "
            "(rotate-half layout, as transformers) at position_ids, in one pass over each head.",
        ),
        OpSchema(
            "QKNormRotaryPacked",
            inputs=(
                Arg("QKV", "[batch, seq, (num_heads + 2*kv_num_heads)*head_dim]", "float32"),
                Arg("q_norm_weight", "[head_dim]", "float32"),
                Arg("k_norm_weight", "[head_dim]", "float32"),
                Arg("position_ids", "[batch, seq]", "int64"),
                Arg("cos_cache", "[max_positions, head_dim/2]", "float32"),
                Arg("sin_cache", "[max_positions, head_dim/2]", "float32"),
            ),
            outputs=(Arg("QKV_out", "[batch, seq, (num_heads + 2*kv_num_heads)*head_dim]", "float32"),),
            attributes={"num_heads": "int", "kv_num_heads": "int", "epsilon": "float"},
            doc="QKNormRotary on the q and k heads of a packed projection (q heads, then k, then v: "
            "GroupQueryAttention's packed-QKV layout); v heads pass through unchanged, so one MatMul feeds "
            "the norm and attention without a Split.",
        ),
        OpSchema(
            "GroupQueryAttention",
            inputs=(
                Arg("query", "[batch, seq, num_heads*head_dim], or packed [batch, seq, (num_heads + "
                    "2*kv_num_heads)*head_dim] without key and value", "float32"),
                Arg("key", "[batch, seq, kv_num_heads*head_dim]", "float32", optional=True),
                Arg("value", "[batch, seq, kv_num_heads*head_dim]", "float32", optional=True),
                Arg("past_key", "[batch, kv_num_heads, past, head_dim]", "float32|float16"),
                Arg("past_value", "[batch, kv_num_heads, past, head_dim]", "float32|float16"),
                Arg("seqlens_k", "[batch]", "int32"),
                Arg("total_sequence_length", "[1]", "int32"),
                Arg("cos_cache", "[max_positions, head_dim/2]", "float32", optional=True),
                Arg("sin_cache", "[max_positions, head_dim/2]", "float32", optional=True),
                Arg("q_norm_weight", "[head_dim]", "float32", optional=True),
                Arg("k_norm_weight", "[head_dim]", "float32", optional=True),
            ),
            outputs=(Arg("output", "[batch, seq, num_heads*head_dim]", "float32"),
                     Arg("present_key", "[batch, kv_num_heads, max(past, total), head_dim]", "float32|float16"),
                     Arg("present_value", "[batch, kv_num_heads, max(past, total), head_dim]", "float32|float16")),
            attributes={"num_heads": "int", "kv_num_heads": "int", "scale": "float", "do_rotary": "int",
                        "bf16_products": "int"},
            optional_attributes={"epsilon": "float"},
            doc="ONNX Runtime's com.microsoft GroupQueryAttention on CPU in float32 (same inputs, outputs and "
            "cache semantics; rotate-half rotary when do_rotary, no local window, softcap or smooth softmax), "
            "computed flash-style: a block of keys at a time with an online softmax, never the [seq, total] "
            "score matrix, so a long prefill costs what its causal half does. Bound to past's own buffers "
            "(past_present_share_buffer), present is written only at the new tokens. bf16_products=1: a prompt's "
            "score and value products take bf16 operands with float32 sums where the CPU has AVX512-BF16 (twice "
            "the products per instruction); softmax and outputs stay float32. The cache (past and present alike) may "
            "be float16: half the memory and the bytes each decode step reads; new keys (rotated) and values are "
            "rounded to it as written and widened to float32 for the products. With q_norm_weight and k_norm_weight "
            "(both or neither) each q and k head is first RMS-normalized over head_dim as QKNormRotary does "
            "(epsilon defaults to 1e-6), so Qwen3's norms need no node of their own.",
        ),
    )
}
