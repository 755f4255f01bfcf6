"""The `cpu` backend: ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from ...kernels.quantize import tiles_fit
from ...kernels.targets import PORTABLE
from ...toolkit.spec import ModelSpec
from ...toolkit.tensors import expected_tensors
from ..ort.backend import CPU_PROVIDER, OrtBackend
from ..base import WEIGHT_BYTES
from ..ort.options import BITS, OrtOptions
from .pipeline import cpu_pipeline

# The projections quantize_matmuls sees one by one (MoE experts go to QMoE at the build's bits).
DENSE_PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


class CpuBackend(OrtBackend):
    name = "cpu"
    description = "ONNX Runtime, CPU execution provider"
    quants = ("f32", "int4", "int8")
    portable = "f32"
    providers = [CPU_PROVIDER]
    provider_options: list[dict] = []
    quantizes_embedding = True  # the int4/int8 table serves the lookup and the tied LM head (cpu/pipeline.py)
    install = "pip install 'qwdeploy[onnx]'"
    qk_norm = "separate"  # ONNX Runtime's CPU GroupQueryAttention has no q/k norm inputs
    # accuracy_level 4: the int4/int8 kernels quantize activations to int8 (what makes them fast on CPU).
    # custom_ops auto: our fused ops wherever this machine can build the kernels (fewer launches, no prepacked
    # weight copies, faster int4 decode); the portable library runs on any CPU of this architecture.
    # scale_dtype f16: block scales rounded to float16, which our ops then read as float16 (half the scale bytes
    # per decode step; ONNX Runtime's MatMulNBits keeps them in float32 tensors).
    # mixed: the first layer and the early attention projections in int8, which halves int4's KL (quant/config.py).
    # attention_bf16 and kv_dtype f16: the int8 activations already trade that much precision; a float build keeps
    # float32.
    defaults = OrtOptions(accuracy_level=4, custom_ops="auto", scale_dtype="f16", mixed=True, attention_bf16=True,
                          kv_dtype="f16")
    kernel_target = PORTABLE
    pipeline_of = staticmethod(cpu_pipeline)

    def estimate(self, spec: ModelSpec, quant: str) -> tuple[int, int]:
        """Our ops read float16 block scales (half_scales.py): 2 bytes per block fewer on every matrix but the
        embedding table, whose lookup keeps float32 ones; a tied table's LM head adds its float16 copy, unless
        its rows fit row tiles, when QuantGather reads the table with the head's float16 scales alone
        (tied_table.py). A mixed int4 build keeps some projections int8 (quant/config.py), and its KV cache
        float16 (half_cache.py)."""
        weights, kv_per_token = super().estimate(spec, quant)
        config = self.defaults.quant_config(quant)
        if config is not None and self.defaults.kv_dtype == "f16":
            kv_per_token //= 2
        if config is None or self.defaults.scale_dtype != "f16":
            return weights, kv_per_token
        block = self.defaults.block_size
        per_weight = 2 / block
        for tensor in expected_tensors(spec):
            if len(tensor.shape) < 2:
                continue
            if tensor.role in DENSE_PROJECTIONS and config.layer_bits(
                    tensor.layer, tensor.role.startswith("attn_"), spec.num_layers) != config.bits:
                weights += tensor.numel * (WEIGHT_BYTES["int8"] - WEIGHT_BYTES[quant])
            if tensor.role != "token_embd":
                weights -= tensor.numel * per_weight
            elif spec.tie_word_embeddings:
                tiled = tiles_fit(-(-tensor.shape[-1] // block), block * BITS[quant] // 8)
                weights += tensor.numel * per_weight * (-1 if tiled else 1)
        return int(weights), kv_per_token


BACKEND = CpuBackend()
