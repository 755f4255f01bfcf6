"""Ascend kernels checked numerically on x86: a kernel lowered by kernels/ascend_x86.py is called the way the
device runtime calls it (the host tiling function fills the tiling key and tiling struct, then the host entry
dispatches to the tiled kernel for that key) and compared with a float64 numpy reference.

The signature comes from the kernel's own .mlir source: its host entry's arguments, by name, are the inputs.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..toolkit.errors import QwdeployError
from . import reference
from .ascend_build import SOURCE_DIR, AscendBuild
from .ascend_x86 import lower

# A kernel passes when max|got - want| <= TOLERANCE * max|want| over each output: fp32 arithmetic in another
# order stays within a few ulps of the largest value (2^-24 each), while a wrong tile, index or stale buffer
# is off by O(1). 2^-18 is 64 such ulps.
TOLERANCE = 2.0 ** -18

_SIGNATURE = re.compile(r"func\.func @(\w+)\((.*?)\)\s*->\s*(.*?)\s*attributes", re.S)
_ARGUMENT = re.compile(r"%(\w+): (tensor<[^>]*>|f32)")
_TILING_CASE = re.compile(r"^\s*case (\d+) \{", re.M)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    h = x.astype(np.float64)  # [rows, hidden]
    return h / np.sqrt((h * h).mean(-1, keepdims=True) + eps) * w.astype(np.float64)


def add_rms_norm(x: np.ndarray, residual: np.ndarray, w: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    h = x.astype(np.float64) + residual.astype(np.float64)  # [rows, hidden]
    return rms_norm(h, w, eps), h


def swiglu(gate_up: np.ndarray) -> np.ndarray:
    return reference.swiglu(gate_up.astype(np.float64))  # [rows, I]


def rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate-half, as reference.qk_norm_rotary applies it after the norm."""
    half = x.shape[-1] // 2
    h = x.astype(np.float64)  # [tokens, heads, head_dim]
    c, s = cos.astype(np.float64)[:, None, :], sin.astype(np.float64)[:, None, :]  # [tokens, 1, head_dim/2]
    first, second = h[..., :half], h[..., half:]
    return np.concatenate([first * c - second * s, second * c + first * s], axis=-1)


# Kernel → its numpy meaning; keyword arguments are the host entry's argument names.
REFERENCES = {"rms_norm": rms_norm, "add_rms_norm": add_rms_norm, "swiglu": swiglu, "rotary": rotary}

Value = np.ndarray | float


@dataclass(frozen=True)
class Signature:
    inputs: tuple[tuple[str, int | None], ...]  # (name, rank) in order; rank None for an f32 scalar
    results: int


@dataclass(frozen=True)
class CheckResult:
    kernel: str
    shapes: dict[str, tuple[int, ...]]
    tiling_key: int
    error: float  # max|got - want| / max|want|, the worst output

    @property
    def passed(self) -> bool:
        return self.error <= TOLERANCE


@lru_cache(maxsize=None)
def signature(kernel: str) -> Signature:
    match = _SIGNATURE.search((SOURCE_DIR / f"{kernel}.mlir").read_text())
    if match is None or match.group(1) != kernel:
        raise QwdeployError(f"kernels/ascend/{kernel}.mlir: no host entry named @{kernel}")
    arguments = _ARGUMENT.findall(match.group(2))
    inputs = tuple((name, None if kind == "f32" else kind.count("x")) for name, kind in arguments)
    return Signature(inputs, match.group(3).count("tensor<"))


def tiling_keys(build: AscendBuild, kernel: str) -> set[int]:
    """The tiling keys the compiler generated a kernel variant for (the cases of the host entry's dispatch)."""
    return {int(key) for key in _TILING_CASE.findall(build.stage_ir(kernel).read_text())}


@lru_cache(maxsize=None)
def _descriptor(rank: int) -> type[ctypes.Structure]:
    """MLIR's strided memref descriptor of one rank."""
    return type(f"Memref{rank}D", (ctypes.Structure,), {"_fields_": [
        ("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64),
        ("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]})


def _describe(array: np.ndarray) -> ctypes.Structure:
    described = _descriptor(array.ndim)()
    described.allocated = described.aligned = array.ctypes.data
    described.sizes[:] = array.shape
    described.strides[:] = [stride // array.itemsize for stride in array.strides]
    return described


class LoweredKernel:
    """One kernel's x86 library, called with numpy arrays; keeps the library loaded while it lives.

    The kernel's host code keeps its assertions (the tiling's unified-buffer check, an unknown tiling key):
    one that fails aborts this process, as it would abort the device's host program."""

    def __init__(self, library: Path, kernel: str):
        self.kernel = kernel
        self.signature = signature(kernel)
        self._library = ctypes.CDLL(str(library))
        self._tiling = getattr(self._library, f"_mlir_ciface_{kernel}_tiling_function")
        self._entry = getattr(self._library, f"_mlir_ciface_{kernel}")
        struct_size = getattr(self._library, f"_mlir_ciface_{kernel}_get_tiling_struct_size_function")
        struct_size.restype = ctypes.c_int64
        self._struct_size = int(struct_size())

    def __call__(self, inputs: dict[str, Value], output_shapes: list[tuple[int, ...]]) -> tuple[list[np.ndarray], int]:
        """(outputs, tiling key). Outputs start as NaN, so anything the kernel leaves unwritten fails the check."""
        arrays = {name: np.ascontiguousarray(inputs[name], dtype=np.float32)
                  for name, rank in self.signature.inputs if rank is not None}
        outputs = [np.full(shape, np.nan, dtype=np.float32) for shape in output_shapes]
        arguments = [ctypes.c_float(inputs[name]) if rank is None else ctypes.byref(_describe(arrays[name]))
                     for name, rank in self.signature.inputs]
        arguments += [ctypes.byref(_describe(out)) for out in outputs]
        key, tiling = ctypes.c_int64(-1), np.zeros(self._struct_size, dtype=np.int64)
        arguments += [ctypes.byref(key), ctypes.byref(_describe(tiling))]
        self._tiling(*arguments)
        results = type("Results", (ctypes.Structure,), {"_fields_": [
            (f"result{i}", _descriptor(out.ndim)) for i, out in enumerate(outputs)]})()
        self._entry(ctypes.byref(results), *arguments)
        for i, out in enumerate(outputs):
            if getattr(results, f"result{i}").aligned != out.ctypes.data:
                raise QwdeployError(f"{self.kernel}: result {i} is not its output argument: the lowered kernel wrote "
                                    "elsewhere than the device kernel would")
        return outputs, key.value


def load(build: AscendBuild, kernel: str, workdir: Path) -> LoweredKernel:
    """Lowers the build's kernel to x86 in workdir and loads it."""
    return LoweredKernel(lower(build.stage_ir(kernel), workdir), kernel)


def check(lowered: LoweredKernel, inputs: dict[str, Value]) -> CheckResult:
    expected = REFERENCES[lowered.kernel](**inputs)
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    got, key = lowered(inputs, [want.shape for want in expected])
    error = max(float(np.max(np.abs(g - w))) / float(np.max(np.abs(w))) for g, w in zip(got, expected, strict=True))
    shapes = {name: np.shape(value) for name, value in inputs.items() if np.ndim(value)}
    return CheckResult(lowered.kernel, shapes, key, error)
