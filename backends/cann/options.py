"""What `-O KEY=VALUE` may set on the cann backend."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import choice, option, parse_bool

PRECISION_MODES = ("must_keep_origin_dtype", "force_fp16", "allow_mix_precision", "allow_fp32_to_fp16")


def _gears(text: str) -> tuple[int, ...]:
    gears = tuple(sorted({int(t) for t in text.split(",") if t}))
    if not gears or gears[0] < 1:
        raise ValueError("expected positive prefill lengths, e.g. 1,16,64,256")
    return gears


@dataclass(frozen=True)
class CannOptions:
    context: int = option(4096, int, "KV buffer length per layer (capped at the model's max_position_embeddings)")
    gears: tuple[int, ...] = option((1, 16, 64, 256), _gears,
                                    "sequence lengths ATC compiles (--dynamic_dims); 1 is the decode step")
    precision_mode: str = option("must_keep_origin_dtype", choice(*PRECISION_MODES),
                                 "ATC --precision_mode (keep fp32 softmax and norms as the graph has them)")
    explain: bool = option(False, parse_bool, "list every candidate a pass rejected, and why")
