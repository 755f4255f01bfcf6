"""Block-wise integer quantization of a weight matrix in ONNX Runtime's MatMulNBits layout.

W is [N, K] (output rows, input columns); each row is cut into blocks of `block` columns, each
block gets one scale (and a zero point unless symmetric). Two ways to pick the scale:
  rtn:    round to nearest with the block's range mapped onto the integer range (the baseline);
  search: try shrunken ranges (clipping ratios) per block, keep the one with the least squared
          reconstruction error, then refit the scale by least squares for the chosen integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATIOS = np.linspace(0.70, 1.0, 16, dtype=np.float32)  # clipping ratios the search tries


@dataclass(frozen=True)
class Quantized:
    packed: np.ndarray  # [N, blocks, block * bits / 8] uint8
    scales: np.ndarray  # [N, blocks] fp32
    zero_points: np.ndarray | None  # [N, ceil(blocks * bits / 8)] uint8 packed, None: 2^(bits-1)
    bits: int
    block: int
    k: int


def _blocks(w: np.ndarray, block: int) -> np.ndarray:
    n, k = w.shape
    pad = -k % block
    w = np.pad(w.astype(np.float32), ((0, 0), (0, pad))) if pad else w.astype(np.float32)
    return w.reshape(n, -1, block)  # [N, blocks, block]


def _symmetric(b: np.ndarray, bits: int, ratio: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(q in [-2^(bits-1), 2^(bits-1) - 1], scale [N, blocks, 1]); the largest |w| maps to -2^(bits-1)."""
    qmax = 2 ** (bits - 1)
    idx = np.abs(b).argmax(-1)[..., None]
    peak = np.take_along_axis(b, idx, -1) * ratio  # [N, blocks, 1] signed
    scale = peak / -qmax
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return np.clip(np.rint(b / scale), -qmax, qmax - 1), scale


def _asymmetric(b: np.ndarray, bits: int, ratio: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q in [0, 2^bits - 1], scale, zero point), both [N, blocks, 1]; the range always contains 0."""
    top = 2 ** bits - 1
    lo, hi = np.minimum(b.min(-1, keepdims=True), 0) * ratio, np.maximum(b.max(-1, keepdims=True), 0) * ratio
    scale = ((hi - lo) / top).astype(np.float32)
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    zero = np.clip(np.rint(-lo / scale), 0, top)
    return np.clip(np.rint(b / scale) + zero, 0, top), scale, zero


def _fit(b: np.ndarray, bits: int, symmetric: bool, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q stored unsigned, scale, zero point) for one clipping ratio."""
    if symmetric:
        q, scale = _symmetric(b, bits, ratio)
        return q + 2 ** (bits - 1), scale, np.full_like(scale, 2 ** (bits - 1))
    return _asymmetric(b, bits, ratio)


def _search(b: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    best_q, best_s, best_z = _fit(b, bits, symmetric, 1.0)
    best_err = (((best_q - best_z) * best_s - b) ** 2).sum(-1, keepdims=True)  # [N, blocks, 1]
    for ratio in RATIOS[:-1]:
        q, s, z = _fit(b, bits, symmetric, float(ratio))
        err = (((q - z) * s - b) ** 2).sum(-1, keepdims=True)
        better = err < best_err
        best_q, best_s, best_z = np.where(better, q, best_q), np.where(better, s, best_s), np.where(better, z, best_z)
        best_err = np.minimum(err, best_err)
    centered = best_q - best_z  # least-squares scale for the chosen integers
    denom = (centered ** 2).sum(-1, keepdims=True)
    refit = np.where(denom > 0, (centered * b).sum(-1, keepdims=True) / np.maximum(denom, 1e-30), best_s)
    err = ((centered * refit - b) ** 2).sum(-1, keepdims=True)
    return best_q, np.where(err < best_err, refit, best_s).astype(np.float32), best_z


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ints [..., m] → bytes, low nibble first for 4 bits."""
    values = values.astype(np.uint8)
    if bits == 8:
        return values
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros_like(values[..., :1])], -1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def quantize(w: np.ndarray, bits: int = 4, block: int = 32, symmetric: bool = True, method: str = "search",
             scale_dtype: type = np.float32) -> Quantized:
    """w: [N, K] float → MatMulNBits B, scales and zero points."""
    if bits not in (4, 8) or block < 16 or block > 256 or block & (block - 1):
        raise ValueError(f"bits {bits} / block {block}: need 4 or 8 bits and a power-of-two block in 16-256")
    b = _blocks(w, block)  # [N, blocks, block]
    q, scale, zero = _search(b, bits, symmetric) if method == "search" else _fit(b, bits, symmetric, 1.0)
    scale = scale.astype(scale_dtype).astype(np.float32)  # fp16 scales: round the same way the runtime will
    zero_points = None if symmetric else _pack(zero[..., 0], bits)
    return Quantized(_pack(q, bits), scale[..., 0], zero_points, bits, block, w.shape[1])


def dequantize(qw: Quantized) -> np.ndarray:
    """[N, K] fp32, exactly as MatMulNBits reads its weights."""
    n, blocks, _ = qw.packed.shape
    if qw.bits == 4:
        q = np.stack([qw.packed & 0xF, qw.packed >> 4], -1).reshape(n, blocks, -1)
        zero = (np.stack([qw.zero_points & 0xF, qw.zero_points >> 4], -1).reshape(n, -1)[:, :blocks]
                if qw.zero_points is not None else np.full((n, blocks), 8))
    else:
        q = qw.packed
        zero = qw.zero_points if qw.zero_points is not None else np.full((n, blocks), 128)
    w = (q.astype(np.float32) - zero[..., None]) * qw.scales[..., None]  # [N, blocks, block]
    return w.reshape(n, -1)[:, :qw.k]
