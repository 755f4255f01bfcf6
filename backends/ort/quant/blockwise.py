"""Block-wise integer quantization of a weight matrix in ONNX Runtime's MatMulNBits layout.

W is [N, K] (output rows, input columns); each row is cut into blocks of `block` columns, each
block gets one scale (and a zero point unless symmetric). Two ways to pick the scale:
  rtn:    round to nearest with the block's range mapped onto the integer range (the baseline);
  search: try shrunken ranges (clipping ratios) per block, keep the one with the least squared
          reconstruction error, then refit the scale by least squares for the chosen integers. The
          ratios go coarse to fine: 4 across [0.7, 1], then the best one's neighbours at half and a
          quarter of that spacing - 8 tries instead of a 16-point grid's, for the same error within
          0.05% on Gaussian and Student-t weights.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

COARSE = np.linspace(0.70, 1.0, 4, dtype=np.float32)  # clipping ratios the search tries first
FINE = (0.05, 0.025)  # then the best ratio so far +- each of these, in turn
CHUNK_ELEMENTS = 2 ** 18  # per slice of rows the search works on: its temporaries fit in L2


class NonFinite(ValueError):
    """A weight holding a NaN or Inf: no scale represents it."""


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
    # Row-major first: a transposed view would reshape into blocks strided across memory.
    w = np.ascontiguousarray(w, dtype=np.float32)
    pad = -k % block
    return (np.pad(w, ((0, 0), (0, pad))) if pad else w).reshape(n, -1, block)  # [N, blocks, block]


def _params(b: np.ndarray, bits: int, symmetric: bool, ratio: float | np.ndarray,
            peak: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero point), both [N, blocks, 1], for the block ranges shrunk by `ratio`.

    Symmetric: the signed value of largest magnitude maps to -2^(bits-1), the zero point is fixed at
    2^(bits-1). Asymmetric: [min, max] (always containing 0) maps onto [0, 2^bits - 1]."""
    if symmetric:
        half = 2 ** (bits - 1)
        scale = peak * np.float32(ratio / -half)
        scale[scale == 0] = 1.0
        return scale, np.full_like(scale, half)
    lo, hi = np.minimum(b.min(-1, keepdims=True), 0) * ratio, np.maximum(b.max(-1, keepdims=True), 0) * ratio
    scale = ((hi - lo) / (2 ** bits - 1)).astype(np.float32)
    scale[scale == 0] = 1.0
    return scale, np.clip(np.rint(-lo / scale), 0, 2 ** bits - 1)


def _codes(b: np.ndarray, bits: int, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Unsigned integer codes (as float) of b for these scales and zero points, [N, blocks, block]."""
    q = b / scale
    np.rint(q, out=q)
    q += zero
    return np.clip(q, 0, 2 ** bits - 1, out=q)


def _error(b: np.ndarray, bits: int, scale: np.ndarray, zero: np.ndarray, symmetric: bool,
           energy: np.ndarray) -> np.ndarray:
    """Squared reconstruction error per block, [N, blocks, 1]: sum (s q - b)^2 = s^2 q.q - 2 s q.b + b.b with
    energy = b.b, so a try costs the codes and two dot products (einsum: one pass each) in one buffer."""
    if symmetric:  # the same integers as _codes less the fixed zero point, in two passes fewer
        half = 2 ** (bits - 1)
        t = b / scale
        np.rint(t, out=t)
        np.clip(t, -half, half - 1, out=t)
    else:
        t = _codes(b, bits, scale, zero)
        t -= zero
    qq = np.einsum("...i,...i->...", t, t)[..., None]
    qb = np.einsum("...i,...i->...", t, b)[..., None]
    return scale * (scale * qq - 2 * qb) + energy


def _peak(b: np.ndarray, symmetric: bool) -> np.ndarray | None:
    """The signed value of largest magnitude per block, [N, blocks, 1] (symmetric ranges only)."""
    return np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1) if symmetric else None


def _search(b: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    peak = _peak(b, symmetric)
    energy = np.einsum("...i,...i->...", b, b)[..., None]  # [N, blocks, 1]
    best_r = np.ones(b.shape[:-1] + (1,), np.float32)  # [N, blocks, 1]
    best_s, best_z = _params(b, bits, symmetric, 1.0, peak)
    best_err = _error(b, bits, best_s, best_z, symmetric, energy)

    def consider(ratio: float | np.ndarray) -> None:  # one ratio, or one per block
        nonlocal best_r, best_s, best_z, best_err
        s, z = _params(b, bits, symmetric, ratio, peak)
        err = _error(b, bits, s, z, symmetric, energy)
        better = err < best_err
        best_r, best_s, best_z = np.where(better, ratio, best_r), np.where(better, s, best_s), np.where(better, z, best_z)
        best_err = np.minimum(err, best_err)

    for ratio in COARSE[:-1]:
        consider(float(ratio))
    for step in FINE:
        center = best_r
        for ratio in (center - step, center + step):
            consider(np.clip(ratio, COARSE[0], 1.0).astype(np.float32))
    q = _codes(b, bits, best_s, best_z)
    centered = q - best_z  # least-squares scale for the chosen integers
    denom = (centered ** 2).sum(-1, keepdims=True)
    refit = np.where(denom > 0, (centered * b).sum(-1, keepdims=True) / np.maximum(denom, 1e-30), best_s)
    err = ((centered * refit - b) ** 2).sum(-1, keepdims=True)
    return q, np.where(err < best_err, refit, best_s).astype(np.float32), best_z


def _nearest(b: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    peak = _peak(b, symmetric)
    scale, zero = _params(b, bits, symmetric, 1.0, peak)
    return _codes(b, bits, scale, zero), scale, zero


@dataclass(frozen=True)
class Slice:
    """Consecutive rows of a quantized matrix, from row `start`."""
    start: int
    packed: np.ndarray  # [rows, blocks, block * bits / 8] uint8
    scales: np.ndarray  # [rows, blocks] fp32, rounded to the scale dtype
    zero_points: np.ndarray | None  # [rows, ceil(blocks * bits / 8)] uint8 packed, None when symmetric


def quantized_slices(blocks: Sequence[np.ndarray], bits: int = 4, block: int = 32, symmetric: bool = True,
                     method: str = "search", scale_dtype: type = np.float32,
                     consumed: Callable[[np.ndarray], None] = lambda rows: None) -> Iterator[Slice]:
    """W: [N, K] of any float dtype, given as consecutive row blocks (memory maps, bf16, transposed views: a
    packed weight's parts, never joined), quantized slice of rows by slice, in row order, on every core: only a
    few slices are ever in float32 or held quantized, so a caller that writes each one out holds no whole copy
    (numpy releases the GIL in its loops). NonFinite for a NaN or Inf. `consumed(rows)`: each slice of the rows
    once cast (a memory map's pages can go)."""
    if bits not in (4, 8) or block < 16 or block > 256 or block & (block - 1):
        raise ValueError(f"bits {bits} / block {block}: need 4 or 8 bits and a power-of-two block in 16-256")
    fit = _search if method == "search" else _nearest

    def one(start: int, rows: np.ndarray) -> Slice:
        b = _blocks(rows, block)
        consumed(rows)
        if not np.isfinite(b).all():
            raise NonFinite
        q, scale, zero = fit(b, bits, symmetric)
        scale = scale[..., 0].astype(scale_dtype).astype(np.float32)  # fp16 scales: round as the runtime will
        return Slice(start, _pack(q, bits), scale, None if symmetric else _pack(zero[..., 0], bits))

    step = max(1, CHUNK_ELEMENTS // (blocks[0].shape[1] + block))

    def slices() -> Iterator[tuple[int, np.ndarray]]:  # a slice never spans two blocks
        offset = 0
        for rows in blocks:
            for start in range(0, len(rows), step):
                yield offset + start, rows[start:start + step]
            offset += len(rows)

    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[Slice]] = deque()
        for start, rows in slices():
            pending.append(pool.submit(one, start, rows))
            if len(pending) > 2 * workers:  # bounded look-ahead: finished slices wait for the caller
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ints [..., m] → bytes, low nibble first for 4 bits."""
    values = values.astype(np.uint8)
    if bits == 8:
        return values
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros_like(values[..., :1])], -1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def quantize(w: np.ndarray, bits: int = 4, block: int = 32, symmetric: bool = True, method: str = "search",
             scale_dtype: type = np.float32, consumed: Callable[[np.ndarray], None] = lambda rows: None) -> Quantized:
    """w: [N, K] of any float dtype → MatMulNBits B, scales and zero points, whole in memory (quantized_slices)."""
    n, k = w.shape
    blocks = -(-k // block)
    packed = np.empty((n, blocks, block * bits // 8), np.uint8)
    scales = np.empty((n, blocks), np.float32)
    zero_points = None if symmetric else np.empty((n, -(-blocks * bits // 8)), np.uint8)
    for part in quantized_slices([w], bits, block, symmetric, method, scale_dtype, consumed):
        rows = slice(part.start, part.start + len(part.packed))
        packed[rows], scales[rows] = part.packed, part.scales
        if zero_points is not None:
            zero_points[rows] = part.zero_points
    return Quantized(packed, scales, zero_points, bits, block, k)


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
