"""The parts of llama.cpp's C API the profiler needs beyond llama-cpp-python's wrappers.

ggml tensors reach the eval callback as bare pointers; ggml_op_desc (libggml-base) names their
op, and the name field sits at a fixed offset of struct ggml_tensor (checked against llama.cpp's
own tensor names such as "result_output" in the tests).
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

from ...toolkit.errors import MissingDependencyError

TENSOR_NAME_OFFSET = 256  # struct ggml_tensor: type, buffer, ne[4], nb[4], op, op_params[16], flags, src[10], view_src, view_offs, data
TENSOR_NAME_BYTES = 64
# Ops that only reinterpret a tensor's memory: the CPU backend computes nothing for them.
EMPTY_OPS = frozenset({"NONE", "RESHAPE", "VIEW", "PERMUTE", "TRANSPOSE"})


def llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependencyError("profiling GGUF needs llama.cpp: pip install 'qwdeploy[llama]'") from None
    return llama_cpp


class Ggml:
    """Op and tensor names of ggml tensors handed to the scheduler's eval callback."""

    def __init__(self):
        lib_dir = Path(llama_cpp().__file__).parent / "lib"
        self._lib = ctypes.CDLL(str(next(lib_dir.glob("libggml-base.so*"))))
        self._lib.ggml_op_desc.restype = ctypes.c_char_p
        self._lib.ggml_op_desc.argtypes = [ctypes.c_void_p]

    def op(self, tensor: int) -> str:
        return self._lib.ggml_op_desc(tensor).decode()

    @staticmethod
    def name(tensor: int) -> str:
        raw = ctypes.string_at(tensor + TENSOR_NAME_OFFSET, TENSOR_NAME_BYTES)
        return raw.split(b"\0", 1)[0].decode(errors="replace")


_SILENT = None


def silence_logs() -> None:
    """Route llama.cpp's log lines to a no-op (kept referenced for the life of the process)."""
    global _SILENT
    lib = llama_cpp()
    if _SILENT is None:
        _SILENT = lib.llama_log_callback(lambda level, text, data: None)
        lib.llama_log_set(_SILENT, None)
