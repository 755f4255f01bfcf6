"""Untrusted GGUF headers: each loads or is refused with one QwdeployError line naming the file and the
problem, never another exception, a hang or an allocation sized by a lie."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from qwdeploy.exporters.gguf.reader import GGUFFile
from qwdeploy.toolkit.errors import ArtifactError

from untrusted import fifo, refused, unprivileged

RNG = np.random.default_rng(10)


F32, Q8_0, STRING, ARRAY, UINT32, FLOAT32 = 0, 8, 8, 9, 4, 6
TOKENS = [b"a", b"bc", b"<|im_start|>"]
EMBD = RNG.standard_normal(24).astype(np.float32).tobytes()  # 8 x 3 F32
QUANT = RNG.integers(1, 256, 68, dtype=np.uint8).tobytes()  # 2 rows of one Q8_0 block


def gstr(raw: bytes) -> bytes:
    return struct.pack("<Q", len(raw)) + raw


def kvs(*extra: tuple[str, int, bytes]) -> list[tuple[str, int, bytes]]:
    tokens = struct.pack("<IQ", STRING, len(TOKENS)) + b"".join(gstr(t) for t in TOKENS)
    return [("general.architecture", STRING, gstr(b"qwen3")), ("tokenizer.ggml.tokens", ARRAY, tokens),
            ("qwen3.block_count", UINT32, struct.pack("<I", 2)),
            ("scores", ARRAY, struct.pack("<IQ2f", FLOAT32, 2, 0.5, -1.25)), *extra]


def tensors(*extra: tuple) -> list[tuple]:
    return [("token_embd.weight", (8, 3), F32, 0, EMBD), ("blk.0.attn_q.weight", (32, 2), Q8_0, 96, QUANT), *extra]


def test_valid_gguf_loads(tmp_path, make_gguf):
    path = tmp_path / "ok.gguf"
    path.write_bytes(make_gguf(kvs(), tensors()))
    g = GGUFFile(path)
    assert g.metadata["tokenizer.ggml.tokens"] == ["a", "bc", "<|im_start|>"] and g.metadata["scores"] == [0.5, -1.25]
    assert g.tensors["token_embd.weight"].shape == (3, 8) and g.raw("blk.0.attn_q.weight").tobytes() == QUANT


GGUF_CASES = {
    "cut to 100 bytes": (lambda b: b(kvs(), tensors())[:100], "truncated or corrupt: .* the file has 100$"),
    "cut in tensor data": (lambda b: b(kvs(), tensors())[:-10], "tensor 'blk.0.attn_q.weight' spans bytes"),
    "bad magic": (lambda b: b(kvs(), tensors(), magic=b"GGML"), "not a GGUF file"),
    "version 1": (lambda b: b(kvs(), tensors(), version=1), "unsupported GGUF version 1"),
    "tensor count": (lambda b: b(kvs(), tensors(), n_tensors=2**60), "tensor count is 1152921504606846976, more"),
    "kv count": (lambda b: b(kvs(), tensors(), n_kv=2**60), "metadata count is 1152921504606846976, more"),
    "string length": (lambda b: b(kvs(("k", STRING, struct.pack("<Q", 2**40))), tensors()), "'k' .* runs past"),
    "value type": (lambda b: b(kvs(("k", 99, b"")), tensors()), "'k' has unknown value type 99"),
    "nested array": (lambda b: b(kvs(("k", ARRAY, struct.pack("<IQ", ARRAY, 1))), tensors()), "nested arrays"),
    "array item type": (lambda b: b(kvs(("k", ARRAY, struct.pack("<IQ", 77, 1))), tensors()), "item type 77"),
    "array length": (lambda b: b(kvs(("k", ARRAY, struct.pack("<IQ", FLOAT32, 2**60))), tensors()),
                     "length of 'k' is 1152921504606846976, more"),
    "string array length": (lambda b: b(kvs(("k", ARRAY, struct.pack("<IQ", STRING, 2**60))), tensors()),
                            "length of 'k' is 1152921504606846976, more"),
    "not utf-8": (lambda b: b(kvs(("k", STRING, gstr(b"\xff\xfe"))), tensors()), "value of 'k' is not UTF-8"),
    "alignment 0": (lambda b: b(kvs(("general.alignment", UINT32, struct.pack("<I", 0))), tensors()),
                    "general.alignment 0 is not a power of two"),
    "alignment 3": (lambda b: b(kvs(("general.alignment", UINT32, struct.pack("<I", 3))), tensors()),
                    "general.alignment 3 is not a power of two"),
    "data beyond file": (lambda b: b(kvs(), tensors(("big", (8, 10**6), F32, 128, b""))), "'big' spans bytes"),
    "huge dims": (lambda b: b(kvs(), tensors(("big", (2**40, 2**40), F32, 128, b""))), "'big' spans bytes"),
    "ggml type": (lambda b: b(kvs(), tensors(("t", (4,), 99, 128, b""))), "'t' has unknown ggml type 99"),
    "no dims": (lambda b: b(kvs(), tensors(("t", (), F32, 128, b""))), "'t' has 0 dimensions"),
    "5 dims": (lambda b: b(kvs(), tensors(("t", (1,) * 5, F32, 128, b""))), "'t' has 5 dimensions"),
    "unaligned": (lambda b: b(kvs(), tensors(("t", (1,), F32, 132, b"abcd"))), "'t' offset 132 is not 32-byte"),
    "duplicate": (lambda b: b(kvs(), tensors(("token_embd.weight", (1,), F32, 160, b"abcd"))), "appears twice"),
    "partial block": (lambda b: b(kvs(), tensors(("t", (30, 2), Q8_0, 160, QUANT))), "30 are not whole Q8_0 blocks"),
}


@pytest.mark.parametrize("case", GGUF_CASES)
def test_bad_gguf(tmp_path, make_gguf, case):
    build, problem = GGUF_CASES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(build(make_gguf))
    refused(lambda: GGUFFile(path), ArtifactError, path, problem)


def test_gguf_fifo_and_unreadable(tmp_path, make_gguf):
    path = fifo(tmp_path / "x.gguf")
    refused(lambda: GGUFFile(path), ArtifactError, path, "not a regular file")
    path.unlink()
    path.write_bytes(make_gguf(kvs(), tensors()))
    path.chmod(0)
    assert unprivileged(f"GGUFFile(Path({str(path)!r}))") == f"{path}: cannot read (Permission denied)"
