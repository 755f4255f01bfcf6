"""What a weight-quantization pass is asked to do; parsed from backend options, unknown keys refused."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

KEEP_CHOICES = ("embed", "lm_head", "first", "last")  # weights that may stay in the graph's float type
LAYER = re.compile(r"layers\.(\d+)[./]")
ATTENTION = re.compile(r"attn[./_]")  # a node or tensor of a decoder layer's attention block
# Mixed int4: rounding error that enters early passes through every later layer. Measured on random
# Qwen2.5-0.5B weights (mean KL against fp32 over 128 positions): all int4 1.12; the first layer at int8
# 0.64; that and the attention projections of the first 4 of 24 layers 0.50, for 3% more weight bytes.
MIXED_ATTENTION_SHARE = 6  # the attention projections of the first 1/6 of the layers stay int8


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 4
    block_size: int = 32
    symmetric: bool = True
    scale_dtype: str = "f32"  # "f16": scales rounded to fp16 (stored in the graph's float type)
    accuracy_level: int = 0  # MatMulNBits: 4 lets the CPU kernel quantize activations to int8
    method: str = "search"  # "rtn" | "search"
    keep: tuple[str, ...] = field(default_factory=tuple)
    mixed: bool = False  # int4: the first layer and the early layers' attention stay int8

    @property
    def scale_numpy(self) -> type:
        return np.float16 if self.scale_dtype == "f16" else np.float32

    def keeps(self, node_name: str, num_layers: int) -> bool:
        """Whether the projection in node `node_name` stays unquantized."""
        if "lm_head" in node_name:
            return "lm_head" in self.keep
        layer = LAYER.search(node_name)
        if layer is None:
            return False
        index = int(layer.group(1))
        return ("first" in self.keep and index == 0) or ("last" in self.keep and index == num_layers - 1)

    def layer_bits(self, layer: int | None, attention: bool, num_layers: int) -> int:
        """The bits of a projection in decoder layer `layer` (None: outside the layers)."""
        if not self.mixed or self.bits != 4 or layer is None:
            return self.bits
        early = -(-num_layers // MIXED_ATTENTION_SHARE)
        return 8 if layer == 0 or (attention and layer < early) else self.bits

    def node_bits(self, node_name: str, num_layers: int) -> int:
        """The bits of the projection in node `node_name`."""
        layer = LAYER.search(node_name)
        return self.layer_bits(int(layer.group(1)) if layer else None, bool(ATTENTION.search(node_name)),
                               num_layers)

    def validate(self) -> "QuantConfig":
        problems = [
            (self.bits in (4, 8), f"bits {self.bits}: use 4 or 8"),
            (16 <= self.block_size <= 256 and not self.block_size & (self.block_size - 1),
             f"block_size {self.block_size}: use a power of two in 16-256"),
            (self.scale_dtype in ("f32", "f16"), f"scale_dtype {self.scale_dtype}: use f32 or f16"),
            (self.accuracy_level in range(5), f"accuracy_level {self.accuracy_level}: use 0-4"),
            (self.method in ("rtn", "search"), f"method {self.method}: use rtn or search"),
            (all(k in KEEP_CHOICES for k in self.keep), f"keep {','.join(self.keep)}: choose from "
                                                        f"{', '.join(KEEP_CHOICES)}"),
        ]
        bad = [why for ok, why in problems if not ok]
        if bad:
            raise ValueError(bad[0])
        return self
