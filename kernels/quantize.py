"""Float weights → the block-quantized layouts the quantized ops read (MatMulNBits' for QuantSwiGLU,
the symmetric variant for QMoE). Used by tests and benchmarks to make inputs."""

from __future__ import annotations

import numpy as np


def quantize_blocks(w: np.ndarray, bits: int, block_size: int, symmetric: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """w: [rows, cols] → packed [rows, blocks, block_size*bits/8] uint8, scales [rows, blocks] float32,
    zero points (MatMulNBits packing: [rows * ceil(blocks*bits/8)] uint8) or None when symmetric."""
    rows, cols = w.shape
    blocks = -(-cols // block_size)
    padded = np.zeros((rows, blocks * block_size), np.float64)
    padded[:, :cols] = w
    padded = padded.reshape(rows, blocks, block_size)  # [rows, blocks, block_size]
    qmax = (1 << bits) - 1
    if symmetric:
        zp = np.full((rows, blocks), 1 << (bits - 1), np.float64)
        scale = np.abs(padded).max(-1) / (1 << (bits - 1))  # [rows, blocks]
    else:
        lo, hi = np.minimum(padded.min(-1), 0.0), np.maximum(padded.max(-1), 0.0)
        scale = (hi - lo) / qmax
        zp = np.clip(np.round(-lo / np.where(scale == 0, 1, scale)), 0, qmax)
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.round(padded / scale[..., None].astype(np.float64) + zp[..., None]), 0, qmax).astype(np.uint8)
    if bits == 4:
        q = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)  # low nibble first
    zero_points = None
    if not symmetric:
        zpq = zp.astype(np.uint8)
        if bits == 4:
            if blocks % 2:
                zpq = np.concatenate([zpq, np.zeros((rows, 1), np.uint8)], axis=1)
            zpq = zpq[:, 0::2] | (zpq[:, 1::2] << 4)
        zero_points = zpq.reshape(-1)
    return q, scale, zero_points
