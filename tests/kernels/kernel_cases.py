"""Random inputs for every op at several shapes (odd sizes on purpose: vector bodies plus scalar tails),
their numpy reference outputs, and a writer for the C++ test driver's case folders."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qwdeploy.kernels.quantize import ROW_TILE, quantize_blocks, tile_rows
from qwdeploy.kernels.reference import REFERENCES, Prefill, head_norm, past_lengths
from qwdeploy.kernels.schemas import SCHEMAS
from qwdeploy.toolkit.runtimes.llamacpp.native import cpu_flags


@dataclass
class Case:
    op: str
    name: str
    inputs: dict[str, np.ndarray | None]
    attributes: dict[str, int | float]
    sizes: dict[str, int] = field(default_factory=dict)  # what the C++ driver needs besides the arrays
    atol: float = 1e-4
    rtol: float = 1e-4

    def expected(self, prefill: Prefill = Prefill.ROWS) -> list[np.ndarray]:
        """The outputs of a build whose prefill path is `prefill` (prefill_here), for the cases it takes there:
        accuracy_level 4 and 16 tokens or more."""
        return _listed(REFERENCES[self.op](**self._arguments(prefill)))

    def bounds(self, prefill: Prefill = Prefill.ROWS) -> list[np.ndarray]:
        """How far from expected(prefill) each output element may land: atol + rtol * |want|. QuantSwiGLU's
        gate and up sums are held to that bound and it is carried through silu(gate) * up, because a product
        near zero from one small factor still carries the other's rounding: this bound where it is the larger."""
        expected = self.expected(prefill)
        bounds = [self.atol + self.rtol * np.abs(want.astype(np.float64)) for want in expected]
        if self.op == "QuantSwiGLU":
            sums = _listed(REFERENCES["QuantLinear"](**self._arguments(prefill)))[0].astype(np.float64)
            gate, up = np.split(sums, 2, axis=-1)  # [..., I] each
            sig = 1.0 / (1.0 + np.exp(-gate))
            carried = (np.abs(sig * (1.0 + gate * (1.0 - sig)) * up) * (self.atol + self.rtol * np.abs(gate))
                       + np.abs(gate * sig) * (self.atol + self.rtol * np.abs(up)))
            bounds[0] = np.maximum(bounds[0], carried)
        if self.sizes.get("half_cache"):
            bounds[0] = bounds[0] + self._key_rounding(expected)
            bounds[1] = np.maximum(bounds[1], np.spacing(np.abs(expected[1])))  # values round exactly
        return bounds

    def _key_rounding(self, expected: list[np.ndarray]) -> np.ndarray:
        """How far an output may move because a new key, rotated (and normalized) in float32 rather than
        float64, rounds to the other neighbouring float16 in an element: by one step of its key j, which
        moves j's score by at most alpha * max|q| * step_j (max|rotated q| <= sqrt(2) max|q|) and the
        output, a softmax-weighted mean of values, by at most the largest such move times |v_j - out|."""
        H, KV, D, S = (self.attributes["num_heads"], self.attributes["kv_num_heads"], self.sizes["head_dim"],
                       self.sizes["seq"])
        out, keys, values = (e.astype(np.float64) for e in expected)  # [B, S, H*D], [B, KV, T, D] twice
        B = out.shape[0]
        q = self.inputs["query"].astype(np.float64)[..., :H * D].reshape(B, S, H, D)
        if self.inputs.get("q_norm_weight") is not None:
            q = head_norm(q, self.inputs["q_norm_weight"], self.attributes["epsilon"])
        score_step = self.attributes["scale"] * np.sqrt(2) * np.abs(q).max(-1)  # [B, S, H] per unit key step
        out = out.reshape(B, S, H, D)
        bound = np.zeros_like(out)
        for b, past in enumerate(past_lengths(self.inputs["seqlens_k"], S, self.sizes["total"])):
            new_k, new_v = keys[b, :, past:past + S], values[b, :, past:past + S]  # [KV, S, D]
            steps = np.spacing(np.abs(new_k).max(-1).astype(np.float16)).astype(np.float64)  # [KV, S]
            for h in range(H):
                kv = h // (H // KV)
                moves = steps[kv][:, None, None] * np.abs(new_v[kv][:, None] - out[b, :, h][None])
                bound[b, :, h] = score_step[b, :, h, None] * moves.max(0)  # [S, D]
        return bound.reshape(B, S, H * D)

    def _arguments(self, prefill: Prefill) -> dict:
        extra = {}
        if self.op in PREFILL_OPS and self.attributes["accuracy_level"] == 4 and self.sizes["tokens"] >= 16:
            extra = {"prefill": prefill}
        return {**{k: v for k, v in self.inputs.items() if v is not None}, **self.attributes, **extra}

    @property
    def outputs(self) -> list[str]:
        """The outputs the case asks for: the schema's required ones, and the optional sum where it has a skip."""
        return [o.name for o in SCHEMAS[self.op].outputs if not o.optional or self.inputs.get("skip") is not None]


PREFILL_OPS = ("QuantLinear", "QuantSwiGLU")  # the ops whose prefill path (Prefill) changes their numbers


def _listed(out: np.ndarray | tuple[np.ndarray, ...]) -> list[np.ndarray]:
    return list(out) if isinstance(out, tuple) else [out]


def assert_within(got: np.ndarray, want: np.ndarray, bound: np.ndarray, message: str = "") -> None:
    """Every element of got within its bound of want (Case.bounds), no NaN."""
    assert got.shape == want.shape, f"{message}: shape {got.shape}, want {want.shape}"
    excess = np.where(np.isnan(got), np.inf, np.abs(got.astype(np.float64) - want) - bound)
    worst = int(np.argmax(excess))
    assert excess.flat[worst] <= 0, (f"{message}: element {np.unravel_index(worst, got.shape)} is "
                                     f"{got.flat[worst]}, want {want.flat[worst]} within {bound.flat[worst]:.3g}")


AVX512_VNNI = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}  # /proc/cpuinfo's names


def tiles_here(env: Mapping[str, str] = os.environ) -> bool:
    """Whether an AVX-512 build prefills on AMX tiles on this machine: /proc/cpuinfo lists AMX-BF16 (an
    oracle apart from the kernels' own CPUID check) and QWDEPLOY_AMX does not decline them."""
    return {"amx_tile", "amx_bf16"} <= cpu_flags() and env.get("QWDEPLOY_AMX") != "0"


def prefill_here(avx512: bool | None = None, env: Mapping[str, str] = os.environ) -> Prefill:
    """The prefill path of a build on this machine: an AVX-512 VNNI build (avx512; None: the build this CPU
    gets, natively or as the portable library's choice) takes AMX tiles where tiles_here, else the blocked
    layout; every other build the rows path."""
    if avx512 is None:
        avx512 = AVX512_VNNI <= cpu_flags()
    if not avx512:
        return Prefill.ROWS
    return Prefill.TILES if tiles_here(env) else Prefill.BLOCKED


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def swiglu(rng: np.random.Generator, lead: tuple[int, ...], inter: int) -> Case:
    gate_up = _normal(rng, *lead, 2 * inter, scale=3.0)
    rows = int(np.prod(lead))
    return Case("SwiGLU", f"swiglu-{'x'.join(map(str, lead))}-{inter}", {"gate_up": gate_up}, {},
                {"rows": rows, "inter": inter})


def quant_matmul(rng: np.random.Generator, op: str, lead: tuple[int, ...], K: int, N: int, bits: int,
                 block_size: int, symmetric: bool, level: int, bias: bool = False, half: bool = False,
                 tiled: bool = False, norm: str = "", zero_scales: bool = False) -> Case:
    """QuantSwiGLU (N = 2*I) or QuantLinear; half: float16 scales; tiled: B in row tiles; norm "rms": an RMSNorm
    in front, "skip": a residual add too (and its sum out); zero_scales: every 7th block's scale 0 over its
    codes as they are (what the block stands for is zeros). At accuracy_level 4 the reference quantizes the
    activations exactly as the kernels do, so the bound is float rounding, not int8 error."""
    packed, scales, zero_points = quantize_blocks(_normal(rng, N, K), bits, block_size, symmetric)
    if tiled:
        packed = tile_rows(packed)
    scales = scales.reshape(-1).astype(np.float16 if half else np.float32)
    if zero_scales:
        scales[::7] = 0
    inputs = {"X": _normal(rng, *lead, K), "B": packed, "scales": scales, "zero_points": zero_points}
    if op == "QuantLinear":
        inputs["bias"] = _normal(rng, N) if bias else None
    attrs = {"K": K, "N": N, "bits": bits, "block_size": block_size, "accuracy_level": level,
             "row_tile": ROW_TILE if tiled else 1}
    if norm:  # a residual stream off zero and a norm weight off one, as trained layers have them
        inputs["skip"] = _normal(rng, *lead, K, scale=4.0) + 1.0 if norm == "skip" else None
        inputs["norm_weight"] = _normal(rng, K, scale=0.5) + 1.0
        attrs["epsilon"] = 1e-6
    name = (f"{op.lower()}-{'x'.join(map(str, lead))}-K{K}-N{N}-int{bits}-b{block_size}-"
            f"{'sym' if symmetric else 'zp'}-l{level}{'-bias' if bias else ''}{'-f16scales' if half else ''}"
            f"{'-tiled' if tiled else ''}{f'-{norm}' if norm else ''}{'-zeroscales' if zero_scales else ''}")
    sizes = {"tokens": int(np.prod(lead)), "K": K, "N": N, "half_scales": int(half)}
    return Case(op, name, inputs, attrs, sizes, atol=2e-4, rtol=2e-4)


def linear(rng: np.random.Generator, lead: tuple[int, ...], K: int, N: int, bias: bool) -> Case:
    inputs = {"X": _normal(rng, *lead, K), "W": _normal(rng, N, K, scale=K ** -0.5),
              "bias": _normal(rng, N) if bias else None}
    tokens = int(np.prod(lead))
    name = f"linear-{'x'.join(map(str, lead))}-K{K}-N{N}{'-bias' if bias else ''}"
    return Case("Linear", name, inputs, {}, {"tokens": tokens, "K": K, "N": N})


def quant_gather(rng: np.random.Generator, lead: tuple[int, ...], K: int, N: int, bits: int, block_size: int,
                 symmetric: bool, half: bool = False, tiled: bool = False) -> Case:
    """Indices anywhere in [-N, N), the first and last rows among them (one index: the last row); half: float16
    scales; tiled: row tiles."""
    packed, scales, zero_points = quantize_blocks(_normal(rng, N, K), bits, block_size, symmetric)
    if tiled:
        packed = tile_rows(packed)
    indices = rng.integers(-N, N, size=lead).astype(np.int64)
    indices.reshape(-1)[0], indices.reshape(-1)[-1] = 0, N - 1
    inputs = {"data": packed, "indices": indices, "scales": scales.reshape(-1).astype(np.float16 if half else np.float32),
              "zero_points": zero_points}
    attrs = {"K": K, "N": N, "bits": bits, "block_size": block_size, "row_tile": ROW_TILE if tiled else 1}
    name = (f"quantgather-{'x'.join(map(str, lead))}-K{K}-N{N}-int{bits}-b{block_size}-{'sym' if symmetric else 'zp'}"
            f"{'-f16scales' if half else ''}{'-tiled' if tiled else ''}")
    return Case("QuantGather", name, inputs, attrs, {"count": indices.size, "K": K, "N": N, "half_scales": int(half)})


def moe(rng: np.random.Generator, tokens: int, hidden: int, experts: int, inter: int, top_k: int, normalize: int,
        shared: int = 0, shared_gate: bool = False, bits: int = 0, block_size: int = 0) -> Case:
    gate_up = _normal(rng, experts, 2 * inter, hidden, scale=hidden ** -0.5)
    down = _normal(rng, experts, hidden, inter, scale=inter ** -0.5)
    inputs: dict[str, np.ndarray | None] = {"X": _normal(rng, tokens, hidden),
                                            "router_logits": _normal(rng, tokens, experts, scale=2.0)}
    if bits:
        for name, w in (("gate_up", gate_up), ("down", down)):
            packed = [quantize_blocks(w[e], bits, block_size) for e in range(experts)]
            inputs[f"{name}_weights"] = np.stack([p for p, _, _ in packed])
            inputs[f"{name}_scales"] = np.stack([s for _, s, _ in packed])
    else:
        inputs.update(gate_up_weights=gate_up, down_weights=down)
    inputs["shared_gate_up"] = _normal(rng, 2 * shared, hidden, scale=hidden ** -0.5) if shared else None
    inputs["shared_down"] = _normal(rng, hidden, shared, scale=shared ** -0.5) if shared else None
    inputs["shared_gate"] = _normal(rng, 1, hidden, scale=hidden ** -0.5) if shared_gate else None
    attrs = {"top_k": top_k, "normalize_topk": normalize}
    op = "MoE"
    if bits:
        op = "QMoE"
        attrs.update(bits=bits, block_size=block_size)
    name = (f"{op.lower()}-T{tokens}-H{hidden}-E{experts}-I{inter}-k{top_k}-n{normalize}-S{shared}"
            f"{'g' if shared_gate else ''}" + (f"-int{bits}-b{block_size}" if bits else ""))
    sizes = {"tokens": tokens, "hidden": hidden, "experts": experts, "inter": inter, "shared_inter": shared}
    return Case(op, name, inputs, attrs, sizes, atol=2e-4, rtol=2e-4)


def qk_norm_rotary(rng: np.random.Generator, batch: int, seq: int, heads: int, kv_heads: int, head_dim: int,
                   max_positions: int = 64, packed: bool = False) -> Case:
    inv_freq = 1.0 / 1e6 ** (np.arange(head_dim // 2) / (head_dim // 2))
    angles = np.arange(max_positions)[:, None] * inv_freq  # [P, D/2]
    if packed:
        activations = {"QKV": _normal(rng, batch, seq, (heads + 2 * kv_heads) * head_dim, scale=4.0)}
    else:
        activations = {"Q": _normal(rng, batch, seq, heads * head_dim, scale=4.0),
                       "K": _normal(rng, batch, seq, kv_heads * head_dim, scale=4.0)}
    inputs = {**activations,
              "q_norm_weight": _normal(rng, head_dim) + 1.0, "k_norm_weight": _normal(rng, head_dim) + 1.0,
              "position_ids": rng.integers(0, max_positions, (batch, seq)).astype(np.int64),
              "cos_cache": np.cos(angles).astype(np.float32), "sin_cache": np.sin(angles).astype(np.float32)}
    attrs = {"num_heads": heads, "kv_num_heads": kv_heads, "epsilon": 1e-6}
    sizes = {"batch": batch, "seq": seq, "head_dim": head_dim, "max_positions": max_positions,
             "num_heads": heads, "kv_num_heads": kv_heads}
    op = "QKNormRotaryPacked" if packed else "QKNormRotary"
    name = f"qk_norm_rotary{'_packed' if packed else ''}-B{batch}-S{seq}-h{heads}-kv{kv_heads}-D{head_dim}"
    return Case(op, name, inputs, attrs, sizes)


def attention(rng: np.random.Generator, heads: int, kv_heads: int, head_dim: int, seq: int, past: int = 0,
              lengths: tuple[int, ...] = (), packed: bool = True, rotary: bool = True, scale: float = 0.125,
              bf16: bool = False, half: bool = False, qk_norm: bool = False) -> Case:
    """GroupQueryAttention on a cache of `past` tokens. lengths: each row's tokens after the call (right-padded
    rows, ONNX Runtime's batching); default one full row. past = 0 is a first prompt (total = seq). bf16: the
    bf16_products attribute, and a tolerance for bf16's 8-bit significands (their rounding moves a product by
    up to 2^-8 of itself) against the float32 reference. half: a float16 cache, which the reference rounds
    the same way, so the float32 tolerance holds (present_key's within one float16 step, Case.bounds). qk_norm:
    Qwen3's q/k norm weights, on q and k far from unit RMS (so a skipped norm shows)."""
    total, cache = past + seq, np.float16 if half else np.float32
    lengths = lengths or (total,)
    batch, max_positions = len(lengths), total + 3
    inv_freq = 1.0 / 1e4 ** (np.arange(head_dim // 2) / (head_dim // 2))
    angles = np.arange(max_positions)[:, None] * inv_freq  # [P, D/2]
    spread = 3.0 if qk_norm else 1.0
    if packed:
        activations = {"query": _normal(rng, batch, seq, (heads + 2 * kv_heads) * head_dim, scale=spread)}
    else:
        activations = {"query": _normal(rng, batch, seq, heads * head_dim, scale=spread),
                       "key": _normal(rng, batch, seq, kv_heads * head_dim, scale=spread),
                       "value": _normal(rng, batch, seq, kv_heads * head_dim)}
    inputs = {**activations,
              "past_key": _normal(rng, batch, kv_heads, past, head_dim).astype(cache),
              "past_value": _normal(rng, batch, kv_heads, past, head_dim).astype(cache),
              "seqlens_k": np.array(lengths, np.int32) - 1,
              "total_sequence_length": np.array([total], np.int32),
              "cos_cache": np.cos(angles).astype(np.float32) if rotary else None,
              "sin_cache": np.sin(angles).astype(np.float32) if rotary else None,
              "q_norm_weight": _normal(rng, head_dim, scale=0.3) + 1.0 if qk_norm else None,
              "k_norm_weight": _normal(rng, head_dim, scale=0.3) + 1.0 if qk_norm else None}
    attrs = {"num_heads": heads, "kv_num_heads": kv_heads, "scale": scale, "do_rotary": int(rotary),
             **({"bf16_products": 1} if bf16 else {}), **({"epsilon": 1e-5} if qk_norm else {})}
    sizes = {"batch": batch, "seq": seq, "head_dim": head_dim, "past": past, "total": total,
             "max_positions": max_positions if rotary else 0, "packed": int(packed), "half_cache": int(half)}
    name = (f"gqa-h{heads}-kv{kv_heads}-D{head_dim}-S{seq}-past{past}-len{'.'.join(map(str, lengths))}"
            f"{'-packed' if packed else ''}{'-rotary' if rotary else ''}{'-bf16' if bf16 else ''}"
            f"{'-f16cache' if half else ''}{'-qknorm' if qk_norm else ''}")
    # bf16 rounds each value by up to 2^-9 of itself, and an output that nearly cancels keeps that absolute
    # error: the bound scales with the activations' spread (3 with q/k norms: up to 0.046 measured, where 0.3
    # would be a wrong probability or value).
    tolerance = {"atol": 2e-2 * spread, "rtol": 2e-2} if bf16 else {}
    return Case("GroupQueryAttention", name, inputs, attrs, sizes, **tolerance)


def all_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [
        swiglu(rng, (1,), 1), swiglu(rng, (1, 1), 7), swiglu(rng, (2, 3), 37), swiglu(rng, (64,), 301),
        *(quant_matmul(rng, "QuantSwiGLU", lead, K, 2 * inter, bits, block, sym, level)
          for level in (0, 4)
          for lead, K, inter, bits, block, sym in (((1,), 70, 13, 4, 32, True), ((2, 3), 130, 9, 4, 16, False),
                                                   ((5,), 64, 17, 8, 64, True), ((1, 3), 200, 33, 8, 32, False),
                                                   ((17,), 96, 40, 4, 128, False),
                                                   # tasks of 19 gate + 19 up rows: two row tiles, one partial
                                                   ((19,), 160, 150, 4, 32, False))),
        # Odd N (a short last group of rows), K not a multiple of the block, a partial last step, 1 to 20 tokens.
        *(quant_matmul(rng, "QuantLinear", lead, K, N, bits, block, sym, level, bias)
          for level in (0, 4)
          for lead, K, N, bits, block, sym, bias in (((1,), 70, 13, 4, 32, True, True),
                                                     ((2, 3), 130, 9, 4, 16, False, False),
                                                     ((1,), 896, 37, 4, 32, True, False),
                                                     ((9,), 200, 33, 8, 32, False, True),
                                                     ((4,), 64, 6, 8, 64, True, False),
                                                     ((1, 5), 300, 21, 4, 128, True, True),
                                                     ((1,), 48, 5, 4, 16, True, False),
                                                     # 16+ tokens: AVX-512's blocked prefill layout, and
                                                     # AMX tiles (32 rows x 32 tokens, partial ones too, K
                                                     # in slices of 256) where the CPU has them
                                                     ((2, 9), 200, 33, 8, 16, False, True),
                                                     ((20,), 900, 37, 4, 32, True, True),
                                                     ((33,), 256, 19, 4, 64, False, False),
                                                     ((17,), 300, 40, 4, 128, True, False),
                                                     ((16,), 520, 17, 8, 256, True, True),
                                                     # int4 blocks of 16 with zero points: each 16 bytes the
                                                     # tiles' dequantization reads hold two blocks, and the
                                                     # last 32-column group is half full (13 blocks)
                                                     ((18,), 208, 21, 4, 16, False, True),
                                                     # tasks of 38 rows: two row tiles, then a partial pair
                                                     ((20,), 96, 300, 4, 32, True, False),
                                                     # and of 18+ rows over two K slices: four C tiles
                                                     # carried from one slice to the next
                                                     ((20,), 300, 600, 4, 32, False, False),
                                                     # 16 whole blocks of 64 and of 128 at once (AVX-512's
                                                     # activation quantizer), then the rest and a short block
                                                     ((18,), 1100, 9, 4, 64, False, True),
                                                     ((17,), 2100, 7, 4, 128, True, False))),
        # float16 scales: decode (one run of rows; gate and up runs; AVX-512's 4 rows of 4 scales a step,
        # int4 in blocks of 32 and int8 in blocks of 16, with zero points and a partial last step), batch
        # tiles, blocked and AMX prefill, zero points, the float path.
        *(quant_matmul(rng, op, lead, K, N, bits, block, sym, level, half=True)
          for op in ("QuantLinear", "QuantSwiGLU") for level in (0, 4)
          for lead, K, N, bits, block, sym in (((1,), 896, 74, 4, 32, True), ((1,), 200, 38, 4, 32, False),
                                               ((1,), 200, 22, 8, 16, False), ((3,), 200, 34, 8, 32, False),
                                               ((20,), 300, 40, 4, 16, False), ((33,), 256, 38, 4, 64, True))),
        # Row tiles: rows not a multiple of the tile (padding), every block size a chunk holds, zero points,
        # float16 scales, decode, batch tiles, blocked and AMX prefill, the float path.
        *(quant_matmul(rng, op, lead, K, N, bits, block, sym, level, bias=op == "QuantLinear", half=half,
                       tiled=True)
          for op in ("QuantLinear", "QuantSwiGLU") for level in (0, 4)
          for lead, K, N, bits, block, sym, half in (((1,), 896, 40, 4, 32, True, True),
                                                     ((3,), 256, 24, 4, 64, False, False),
                                                     ((20,), 128, 56, 4, 16, True, False),
                                                     ((33,), 192, 48, 8, 32, False, True),
                                                     ((1,), 256, 16, 4, 128, True, False))),
        *(quant_matmul(rng, "QuantLinear", lead, K, N, 4, 32, True, 4, tiled=True)
          for lead, K, N in (((1,), 896, 37), ((2,), 128, 13), ((17,), 512, 150))),
        # Zero scales: AVX-512's blocked prefill multiplies a weight scale by an activation scale 2^e with an
        # integer add to its exponent, which would turn a zero scale's bits into a huge negative number (e < 0),
        # and so multiplies instead in panels holding one; decode and the other ISAs multiply throughout.
        *(quant_matmul(rng, op, lead, 300, 40, 4, 32, False, 4, half=half, zero_scales=True)
          for op, half in (("QuantLinear", False), ("QuantSwiGLU", True)) for lead in ((1,), (20,))),
        # The norm in front, with and without the residual add: decode, batch tiles, blocked and AMX prefill,
        # the float path; K off the float64 lanes (8) and a short last block.
        *(quant_matmul(rng, op, lead, K, N, bits, block, sym, level, bias=op == "QuantLinear", half=half,
                       tiled=tiled, norm=norm)
          for op in ("QuantLinear", "QuantSwiGLU") for level in (0, 4)
          for lead, K, N, bits, block, sym, half, tiled, norm in (
              ((1,), 896, 40, 4, 32, True, True, True, "skip"), ((1, 1), 70, 26, 4, 32, False, False, False, "rms"),
              ((3,), 200, 34, 8, 32, False, False, False, "skip"), ((1, 20), 300, 40, 4, 16, True, True, False, "skip"),
              ((33,), 256, 48, 4, 64, False, False, True, "rms"))),
        # Decode and prefill, rows and K off the vector width, token tiles crossed with partial ones (a batch
        # of 18 decoding: tiles of 4 rows x 4 tokens, the last 2 tokens, the last row alone).
        *(linear(rng, lead, K, N, bias) for lead, K, N, bias in (((1,), 896, 37, False), ((1, 1), 19, 130, True),
                                                                 ((2, 35), 64, 70, False), ((3,), 33, 9, True),
                                                                 ((18, 1), 100, 37, True))),
        # Tables in row order and in row tiles (rows padded to whole tiles), both scale types, zero points.
        *(quant_gather(rng, lead, K, N, bits, block, sym, half, tiled)
          for lead, K, N, bits, block, sym, half, tiled in (((1,), 896, 37, 4, 32, True, True, True),
                                                           ((2, 3), 70, 13, 4, 32, False, False, False),
                                                           ((9,), 256, 22, 8, 32, True, False, True),
                                                           ((4,), 130, 9, 4, 16, False, True, False),
                                                           ((3,), 128, 40, 4, 64, True, True, True))),
        moe(rng, 1, 45, 6, 19, 2, 1), moe(rng, 7, 64, 8, 33, 3, 0, shared=11, shared_gate=True),
        moe(rng, 33, 40, 5, 24, 1, 1, shared=16), moe(rng, 4, 19, 4, 7, 4, 1, shared=5, shared_gate=True),
        moe(rng, 1, 70, 6, 20, 2, 1, bits=4, block_size=32),
        moe(rng, 9, 48, 8, 40, 2, 0, shared=13, shared_gate=True, bits=4, block_size=16),
        moe(rng, 5, 33, 4, 17, 2, 1, bits=8, block_size=16),
        qk_norm_rotary(rng, 1, 1, 2, 1, 6), qk_norm_rotary(rng, 2, 3, 4, 2, 22),
        qk_norm_rotary(rng, 1, 17, 16, 8, 128), qk_norm_rotary(rng, 3, 5, 5, 1, 34),
        qk_norm_rotary(rng, 1, 1, 2, 1, 6, packed=True), qk_norm_rotary(rng, 2, 3, 4, 2, 22, packed=True),
        qk_norm_rotary(rng, 1, 17, 16, 8, 128, packed=True), qk_norm_rotary(rng, 3, 5, 5, 1, 34, packed=True),
        qk_norm_rotary(rng, 2, 7, 3, 3, 2, packed=True),
        # First prompts (one row; two right-padded rows), decode steps on a padded batch, a chunk after a past,
        # query blocks of 8 with partial ones, partial key blocks, head sizes off the vector width.
        attention(rng, 14, 2, 64, 70), attention(rng, 4, 2, 16, 9, lengths=(9, 5)),
        attention(rng, 14, 2, 64, 1, past=130, lengths=(131, 100, 7)), attention(rng, 8, 8, 128, 1, past=5),
        attention(rng, 6, 2, 34, 5, past=67, packed=False, scale=0.0),
        attention(rng, 4, 1, 32, 12, packed=False, rotary=False),
        attention(rng, 3, 3, 6, 1, past=3, lengths=(4, 2), rotary=False),
        # bf16 products: a prompt whose last key block is odd (77 keys), two right-padded rows, a chunk after a
        # past (65 keys), then what stays float32: a head size off the vector width, a decode step.
        attention(rng, 14, 2, 64, 77, bf16=True), attention(rng, 4, 2, 16, 21, lengths=(21, 12), bf16=True),
        attention(rng, 8, 8, 128, 19, past=46, bf16=True), attention(rng, 6, 2, 34, 20, packed=False, bf16=True),
        attention(rng, 14, 2, 64, 1, past=130, bf16=True),
        # Qwen3's shape (2 query heads per kv head): a decode step over two key blocks, the last partial; a
        # prompt in query tasks of 32 tokens (64 rows), the last partial, in float32 and bf16.
        attention(rng, 16, 8, 128, 1, past=200), attention(rng, 16, 8, 128, 70),
        attention(rng, 16, 8, 128, 70, bf16=True),
        # A float16 cache: decode steps (Qwen3's shape over two key blocks; a padded batch with a head size
        # off the vector width), prompts after a past in float32 and bf16 products, a first prompt.
        attention(rng, 16, 8, 128, 1, past=200, half=True),
        attention(rng, 6, 2, 34, 1, past=67, lengths=(68, 20), half=True),
        attention(rng, 14, 2, 64, 21, past=46, half=True),
        attention(rng, 16, 8, 128, 19, past=46, bf16=True, half=True),
        attention(rng, 4, 1, 32, 12, packed=False, rotary=False, half=True),
        # bf16 products after an odd past (each row's last cached value pairs with its first new one), two rows
        # of different pasts, new keys in a chunk of 16 and a partial one.
        attention(rng, 8, 4, 64, 19, past=45, lengths=(64, 50), bf16=True, half=True),
        attention(rng, 8, 4, 64, 19, past=45, lengths=(64, 50), bf16=True),
        # Qwen3's q/k norms: a decode step and a prompt after a past (float16 cache), a first prompt with
        # separate q, k, v and a head size off the vector width.
        attention(rng, 16, 8, 128, 1, past=70, half=True, qk_norm=True),
        attention(rng, 16, 8, 128, 40, past=30, half=True, qk_norm=True),
        attention(rng, 6, 2, 34, 9, packed=False, qk_norm=True),
        # Past one block of 128 keys: a Qwen3 prompt of 150 (bf16 products, its running max moving between
        # blocks), a chunk of 60 after 100 (float32 products, float16 cache), a decode step over three blocks.
        attention(rng, 16, 8, 128, 150, bf16=True, half=True, qk_norm=True),
        attention(rng, 14, 2, 64, 60, past=100, half=True),
        attention(rng, 16, 8, 128, 1, past=300, half=True, qk_norm=True),
    ]


def write_case(case: Case, folder: Path, prefill: Prefill = Prefill.ROWS) -> Path:
    """meta.txt + raw little-endian arrays, the format kernels/tests/kernel_test.cc reads; the outputs of
    Case.expected(prefill) and, as <output>.bound.bin, Case.bounds(prefill)."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = case.outputs
    for name, value in case.inputs.items():
        if value is not None:
            np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tofile(folder / f"{name}.bin")
    for name, value, bound in zip(outputs, case.expected(prefill), case.bounds(prefill), strict=True):
        value.astype("<f4").tofile(folder / f"{name}.bin")
        bound.astype("<f4").tofile(folder / f"{name}.bound.bin")
    meta = {"op": case.op, "outputs": ",".join(outputs), **case.sizes, **case.attributes}
    (folder / "meta.txt").write_text("".join(f"{k} {v}\n" for k, v in meta.items()))
    return folder
