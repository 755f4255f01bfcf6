"""Float weights → the block-quantized layouts the quantized ops read (MatMulNBits' for QuantSwiGLU,
the symmetric variant for QMoE; row tiles for QuantLinear and QuantSwiGLU on CPU). Used by tests and
benchmarks to make inputs, and by the CPU export to write row tiles."""

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


ROW_TILE = 4  # rows per tile and bytes per chunk: kernels/cpu/weights.h (Weights::kRowTile, kTileChunk)
TILE_CHUNK = 64


def tiles_fit(blocks: int, block_bytes: int) -> bool:
    """Whether rows of `blocks` blocks can be laid out in row tiles: whole chunks, no block across two."""
    return blocks * block_bytes % TILE_CHUNK == 0 and TILE_CHUNK % block_bytes == 0


def tile_rows(packed: np.ndarray) -> np.ndarray:
    """[rows, blocks, block_bytes] in row order → row tiles: every 4 rows' bytes interleaved 64 at a time,
    rows padded with zeros to whole tiles; the same [rows', blocks, block_bytes] shape."""
    rows, blocks, block_bytes = packed.shape
    padded = -(-rows // ROW_TILE) * ROW_TILE
    flat = np.zeros((padded, blocks * block_bytes), np.uint8)
    flat[:rows] = packed.reshape(rows, -1)
    tiles = flat.reshape(padded // ROW_TILE, ROW_TILE, -1, TILE_CHUNK).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(tiles).reshape(padded, blocks, block_bytes)


def untile_rows(tiled: np.ndarray, rows: int) -> np.ndarray:
    """tile_rows' inverse: the first `rows` rows in row order."""
    padded, blocks, block_bytes = tiled.shape
    flat = tiled.reshape(padded // ROW_TILE, -1, ROW_TILE, TILE_CHUNK).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(flat).reshape(padded, blocks, block_bytes)[:rows]
