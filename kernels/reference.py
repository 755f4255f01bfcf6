"""Numpy meaning of every op in kernels/schemas.py: the kernels are tested against these.

Computed in float64 where it costs nothing, so the reference is never the less accurate side.
Parameters carry the schema's input names, so `REFERENCES[op](**inputs, **attributes)` works.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .quantize import untile_rows


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def swiglu(gate_up: np.ndarray) -> np.ndarray:
    inter = gate_up.shape[-1] // 2
    g = gate_up[..., :inter].astype(np.float64)  # [..., I]
    u = gate_up[..., inter:].astype(np.float64)  # [..., I]
    return (silu(g) * u).astype(gate_up.dtype)


def dequantize(packed: np.ndarray, scales: np.ndarray, cols: int, bits: int, block_size: int,
               zero_points: np.ndarray | None = None) -> np.ndarray:
    """MatMulNBits layout → float64 [rows, cols]. packed: [rows, blocks, block_size*bits/8] uint8,
    scales: [rows*blocks] or [rows, blocks], zero_points: packed like MatMulNBits' (None = 2^(bits-1))."""
    rows, blocks, _ = packed.shape
    if bits == 4:
        q = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(rows, blocks, block_size)  # low nibble first
    else:
        q = packed.reshape(rows, blocks, block_size)
    if zero_points is None:
        zp = np.full((rows, blocks), 1 << (bits - 1), dtype=np.float64)
    elif bits == 4:
        zp_bytes = zero_points.reshape(rows, -1)
        zp = np.stack([zp_bytes & 0xF, zp_bytes >> 4], axis=-1).reshape(rows, -1)[:, :blocks].astype(np.float64)
    else:
        zp = zero_points.reshape(rows, blocks).astype(np.float64)
    s = scales.reshape(rows, blocks).astype(np.float64)
    w = (q.astype(np.float64) - zp[..., None]) * s[..., None]  # [rows, blocks, block_size]
    return w.reshape(rows, blocks * block_size)[:, :cols]


def quantize_activations(x: np.ndarray, K: int, block_size: int, pow2: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """x [..., K] float32 → int8 codes [..., blocks, block_size] (zero past K) and scales [..., blocks, 1],
    in float32 operations the kernels repeat exactly (kernels/cpu/int8_act.h): scale = max|x|/127, or with
    pow2 that rounded up to a power of two 2^e, |e| <= 64; q = rint(x * 127/max|x|), or rint(x / scale)."""
    blocks = -(-K // block_size)
    padded = np.zeros((*x.shape[:-1], blocks * block_size), np.float32)
    padded[..., :K] = x
    xb = padded.reshape(*x.shape[:-1], blocks, block_size)
    amax = np.abs(xb).max(-1, keepdims=True)  # [..., blocks, 1]
    scale = amax / np.float32(127)
    if not pow2:
        inv = np.divide(np.float32(127), amax, out=np.zeros_like(amax), where=amax > 0)
        return np.clip(np.rint(xb * inv), -127, 127), scale
    up = np.clip((scale.view(np.int32) + np.int32(0x7FFFFF)) & np.int32(0x7F800000),  # next power of two's bits
                 (127 - 64) << 23, (127 + 64) << 23)
    scale = np.where(amax > 0, up.astype(np.int32).view(np.float32), np.float32(0))
    inv = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale > 0)
    return np.clip(np.rint(xb * inv), -127, 127), scale


def bf16(x: np.ndarray) -> np.ndarray:
    """float32 → the nearest bfloat16 (ties to even), as float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)


def rms_norm(X: np.ndarray, norm_weight: np.ndarray, skip: np.ndarray | None = None,
             epsilon: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """The norm QuantLinear and QuantSwiGLU take in front (kernels/cpu/rms_norm.h) → (normed, X + skip), in
    the kernels' own float32 operations: only the mean of squares is float64, rounded once to float32."""
    s = X if skip is None else X + skip  # [..., K]
    mean = ((s.astype(np.float64) ** 2).sum(-1, keepdims=True) / s.shape[-1]).astype(np.float32)  # [..., 1]
    inv = np.float32(1) / np.sqrt(mean + np.float32(epsilon))
    return s * inv * norm_weight, s


class Prefill(Enum):
    """What a CPU build computes for QuantLinear and QuantSwiGLU at accuracy_level 4 from 16 tokens on
    (kernels/cpu/quant_linear.h kBlockedMinTokens)."""
    ROWS = "rows"  # int8 activations, scale max|x|/127: decode's numbers, and ONNX Runtime's MatMulNBits'
    BLOCKED = "blocked"  # AVX-512 VNNI: int4 weights' int8 activations take power-of-two scales (int8_act.h)
    TILES = "tiles"  # AMX: weights and activations rounded to bf16 (kernels/cpu/amx.h)


def quant_linear(X: np.ndarray, B: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None = None,
                 bias: np.ndarray | None = None, skip: np.ndarray | None = None,
                 norm_weight: np.ndarray | None = None, *, K: int, N: int, bits: int, block_size: int,
                 accuracy_level: int, row_tile: int = 1, epsilon: float = 1e-5,
                 prefill: Prefill = Prefill.ROWS) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """row_tile 4: B in row tiles (kernels/quantize.py). prefill: which of a CPU build's paths computes it at
    accuracy_level 4; TILES: weights (q - zero) * scale in float32 and the activations, each rounded to
    bfloat16. With skip: (Y, sum)."""
    if skip is not None and norm_weight is None:
        raise ValueError("skip is given without norm_weight")
    if norm_weight is not None:
        X, total = rms_norm(X, norm_weight, skip, epsilon)
    if row_tile != 1:
        B = untile_rows(B, N)
    w = dequantize(B, scales, K, bits, block_size, zero_points)  # [N, K]
    x = X.astype(np.float64)
    if accuracy_level == 4 and prefill is Prefill.TILES:
        w = bf16(w.astype(np.float32)).astype(np.float64)
        x = bf16(X).astype(np.float64)
    elif accuracy_level == 4:  # what the int8 codes stand for
        # [..., blocks, block_size], [..., blocks, 1]
        q, xs = quantize_activations(X, K, block_size, pow2=prefill is Prefill.BLOCKED and bits == 4)
        x = (q.astype(np.float64) * xs).reshape(*X.shape[:-1], -1)[..., :K]
    y = x @ w.T  # [..., N]
    if bias is not None:
        y += bias
    y = y.astype(X.dtype)
    return (y, total) if skip is not None else y


def quant_swiglu(X: np.ndarray, B: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None = None,
                 skip: np.ndarray | None = None, norm_weight: np.ndarray | None = None, *, K: int, N: int, bits: int,
                 block_size: int, accuracy_level: int, row_tile: int = 1, epsilon: float = 1e-5,
                 prefill: Prefill = Prefill.ROWS) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    out = quant_linear(X, B, scales, zero_points, None, skip, norm_weight, K=K, N=N, bits=bits,
                       block_size=block_size, accuracy_level=accuracy_level, row_tile=row_tile, epsilon=epsilon,
                       prefill=prefill)
    return (swiglu(out[0]), out[1]) if skip is not None else swiglu(out)


def linear(X: np.ndarray, W: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    y = X.astype(np.float64) @ W.astype(np.float64).T  # [..., N]
    return (y if bias is None else y + bias).astype(np.float32)


def quant_gather(data: np.ndarray, indices: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None = None, *,
                 K: int, N: int, bits: int, block_size: int, row_tile: int = 1) -> np.ndarray:
    """Rows `indices` (negative ones from the end) of the table QuantLinear would multiply by: [..., K]."""
    if row_tile != 1:
        data = untile_rows(data, N)
    if np.any((indices < -N) | (indices >= N)):
        raise IndexError(f"indices outside [-{N}, {N})")
    return dequantize(data, scales, K, bits, block_size, zero_points)[indices].astype(np.float32)  # [..., K]


def route(router_logits: np.ndarray, top_k: int, normalize_topk: bool) -> tuple[np.ndarray, np.ndarray]:
    """softmax, top-k (ties → lower expert id), optional renormalisation → ids, weights [T, k]."""
    logits = router_logits.astype(np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)  # [T, E]
    ids = np.argsort(-probs, axis=-1, kind="stable")[:, :top_k]  # [T, k]
    weights = np.take_along_axis(probs, ids, -1)  # [T, k]
    if normalize_topk:
        weights /= weights.sum(-1, keepdims=True)
    return ids, weights


def _expert(x: np.ndarray, gate_up: np.ndarray, down: np.ndarray) -> np.ndarray:
    return swiglu(x @ gate_up.T) @ down.T  # [n, 2I] → [n, I] → [n, H]


def moe(X: np.ndarray, router_logits: np.ndarray, gate_up_weights: np.ndarray, down_weights: np.ndarray,
        shared_gate_up: np.ndarray | None = None, shared_down: np.ndarray | None = None,
        shared_gate: np.ndarray | None = None, *, top_k: int, normalize_topk: int) -> np.ndarray:
    """X: [T, H], gate_up_weights: [E, 2I, H], down_weights: [E, H, I] (float, already dequantized)."""
    xd = X.astype(np.float64)
    ids, weights = route(router_logits, top_k, bool(normalize_topk))
    y = np.zeros_like(xd)  # [T, H]
    for e in np.unique(ids):
        tokens, slot = np.nonzero(ids == e)
        out = _expert(xd[tokens], gate_up_weights[e].astype(np.float64), down_weights[e].astype(np.float64))
        y[tokens] += weights[tokens, slot][:, None] * out
    if shared_gate_up is not None:
        shared = _expert(xd, shared_gate_up.astype(np.float64), shared_down.astype(np.float64))  # [T, H]
        if shared_gate is not None:
            shared *= 1.0 / (1.0 + np.exp(-(xd @ shared_gate.astype(np.float64).T)))  # [T, 1]
        y += shared
    return y.astype(X.dtype)


def qmoe(X: np.ndarray, router_logits: np.ndarray, gate_up_weights: np.ndarray, gate_up_scales: np.ndarray,
         down_weights: np.ndarray, down_scales: np.ndarray, shared_gate_up: np.ndarray | None = None,
         shared_down: np.ndarray | None = None, shared_gate: np.ndarray | None = None, *, top_k: int,
         normalize_topk: int, bits: int, block_size: int) -> np.ndarray:
    E, two_i = gate_up_weights.shape[:2]
    H = X.shape[-1]
    gate_up = np.stack([dequantize(gate_up_weights[e], gate_up_scales[e], H, bits, block_size) for e in range(E)])
    down = np.stack([dequantize(down_weights[e], down_scales[e], two_i // 2, bits, block_size) for e in range(E)])
    return moe(X, router_logits, gate_up, down, shared_gate_up, shared_down, shared_gate, top_k=top_k,
               normalize_topk=normalize_topk)


def _rotate_half(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x [..., D] at positions whose cos/sin rows [..., D/2] broadcast against it."""
    first, second = np.split(x, 2, axis=-1)
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


def head_norm(x: np.ndarray, weight: np.ndarray, epsilon: float) -> np.ndarray:
    """Heads x [..., D] RMS-normalized over D and times weight [D], in float64: Qwen3's q/k norms."""
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + epsilon) * weight.astype(np.float64)


def qk_norm_rotary(Q: np.ndarray, K: np.ndarray, q_norm_weight: np.ndarray, k_norm_weight: np.ndarray,
                   position_ids: np.ndarray, cos_cache: np.ndarray, sin_cache: np.ndarray, *, num_heads: int,
                   kv_num_heads: int, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    head_dim = q_norm_weight.shape[0]
    cos = cos_cache[position_ids].astype(np.float64)[:, :, None, :]  # [B, S, 1, D/2]
    sin = sin_cache[position_ids].astype(np.float64)[:, :, None, :]  # [B, S, 1, D/2]

    def one(x: np.ndarray, weight: np.ndarray, heads: int) -> np.ndarray:
        b, s, _ = x.shape
        h = head_norm(x.reshape(b, s, heads, head_dim), weight, epsilon)  # [B, S, heads, D]
        return _rotate_half(h, cos, sin).reshape(b, s, heads * head_dim).astype(x.dtype)

    return one(Q, q_norm_weight, num_heads), one(K, k_norm_weight, kv_num_heads)


def qk_norm_rotary_packed(QKV: np.ndarray, q_norm_weight: np.ndarray, k_norm_weight: np.ndarray,
                          position_ids: np.ndarray, cos_cache: np.ndarray, sin_cache: np.ndarray, *, num_heads: int,
                          kv_num_heads: int, epsilon: float) -> np.ndarray:
    head_dim = q_norm_weight.shape[0]
    q_end, k_end = num_heads * head_dim, (num_heads + kv_num_heads) * head_dim
    q, k = qk_norm_rotary(QKV[..., :q_end], QKV[..., q_end:k_end], q_norm_weight, k_norm_weight, position_ids,
                          cos_cache, sin_cache, num_heads=num_heads, kv_num_heads=kv_num_heads, epsilon=epsilon)
    return np.concatenate([q, k, QKV[..., k_end:]], axis=-1)  # [B, S, (H + 2*KV) * D]


def past_lengths(seqlens_k: np.ndarray, seq: int, total: int) -> np.ndarray:
    """Each row's cached tokens by ONNX Runtime's GroupQueryAttention rule: none in a first prompt (seq equals
    total_sequence_length), else seqlens_k[b] + 1 - seq; new token s sits at position past + s."""
    if seq == total:
        return np.zeros(len(seqlens_k), np.int64)
    return seqlens_k.astype(np.int64).reshape(-1) + 1 - seq


def group_query_attention(query: np.ndarray, past_key: np.ndarray, past_value: np.ndarray, seqlens_k: np.ndarray,
                          total_sequence_length: np.ndarray, key: np.ndarray | None = None,
                          value: np.ndarray | None = None, cos_cache: np.ndarray | None = None,
                          sin_cache: np.ndarray | None = None, q_norm_weight: np.ndarray | None = None,
                          k_norm_weight: np.ndarray | None = None, *, num_heads: int, kv_num_heads: int, scale: float,
                          do_rotary: int, bf16_products: int = 0,
                          epsilon: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output, present_key, present_value), with ONNX Runtime's rules for a concatenated cache (past_lengths),
    right-padding too. In float32
    whatever bf16_products asks: the exact answer a bf16 kernel is held against. A float16 cache (past_key's
    dtype) holds the new keys and values rounded, and the products read them so. With the norm weights, q and k
    heads are RMS-normalized before rotary, as qk_norm_rotary does."""
    B, S, _ = query.shape
    KV, D = past_key.shape[1], past_key.shape[3]
    H, G, T = num_heads, num_heads // kv_num_heads, int(total_sequence_length.reshape(-1)[0])
    if key is None:  # packed: q heads, then k heads, then v heads
        key, value = query[..., H * D:(H + KV) * D], query[..., (H + KV) * D:]
        query = query[..., :H * D]
    q = query.astype(np.float64).reshape(B, S, H, D)
    k = key.astype(np.float64).reshape(B, S, KV, D)
    if q_norm_weight is not None:
        q, k = head_norm(q, q_norm_weight, epsilon), head_norm(k, k_norm_weight, epsilon)
    v = value.reshape(B, S, KV, D)
    alpha = scale or D ** -0.5
    out = np.zeros((B, S, H, D), np.float64)
    present_k = np.zeros((B, KV, T, D), past_key.dtype)  # a float16 cache rounds what it stores
    present_v = np.zeros((B, KV, T, D), past_value.dtype)
    for b, past in enumerate(past_lengths(seqlens_k, S, T)):
        positions = np.arange(past, past + S)
        qb, kb = q[b], k[b]  # [S, H, D], [S, KV, D]
        if do_rotary:
            cos = cos_cache[positions].astype(np.float64)[:, None, :]  # [S, 1, D/2]
            sin = sin_cache[positions].astype(np.float64)[:, None, :]
            qb, kb = _rotate_half(qb, cos, sin), _rotate_half(kb, cos, sin)
        present_k[b, :, :past] = past_key[b, :, :past]
        present_v[b, :, :past] = past_value[b, :, :past]
        present_k[b, :, past:past + S] = kb.transpose(1, 0, 2)
        present_v[b, :, past:past + S] = v[b].transpose(1, 0, 2)
        keys, values = present_k[b].astype(np.float64), present_v[b].astype(np.float64)  # [KV, T, D]
        for s in range(S):
            seen = past + s + 1  # causal: keys 0 ..= past + s
            for h in range(H):
                scores = keys[h // G, :seen] @ qb[s, h] * alpha  # [seen]
                probs = np.exp(scores - scores.max())
                out[b, s, h] = probs @ values[h // G, :seen] / probs.sum()
    return out.reshape(B, S, H * D).astype(np.float32), present_k, present_v


# Schema op name → reference; the keyword arguments are the op's attributes.
REFERENCES = {
    "SwiGLU": swiglu,
    "Linear": linear,
    "QuantSwiGLU": quant_swiglu,
    "QuantLinear": quant_linear,
    "QuantGather": quant_gather,
    "MoE": moe,
    "QMoE": qmoe,
    "QKNormRotary": qk_norm_rotary,
    "QKNormRotaryPacked": qk_norm_rotary_packed,
    "GroupQueryAttention": group_query_attention,
}
