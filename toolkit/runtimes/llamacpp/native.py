"""The parts of llama.cpp's C API the profiler needs beyond llama-cpp-python's wrappers.

ggml tensors reach the eval callback as bare pointers; ggml_op_desc (libggml-base) names their
op, and the name field sits at a fixed offset of struct ggml_tensor (checked against llama.cpp's
own tensor names such as "result_output" in the tests).
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path

from ...errors import MissingDependencyError

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


AMX_CPU_FLAG = "amx_int8"
AMX_BUILD_FEATURE = "AMX_INT8 = 1"
AMX_NOTE = ("llama.cpp: this build's AMX repack of quantized weights crashes on this CPU "
            "(SIGSEGV in ggml_backend_amx_mul_mat); loading without extra buffer types instead (slower, correct)")
_amx_noted = False


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def amx_repack_crashes(flags: frozenset[str], system_info: str) -> bool:
    """llama-cpp-python 0.3.36 built natively on an AMX CPU faults in its AMX matmul on quantized types."""
    return AMX_CPU_FLAG in flags and AMX_BUILD_FEATURE in system_info


def needs_amx_workaround() -> bool:
    return amx_repack_crashes(cpu_flags(), llama_cpp().llama_print_system_info().decode(errors="replace"))


def note_workarounds() -> None:
    """Say once per process, on stderr, that llama.cpp runs with a workaround (callers in the parent)."""
    global _amx_noted
    if not _amx_noted and needs_amx_workaround():
        print(AMX_NOTE, file=sys.stderr)
        _amx_noted = True


def model_params(gpu_layers: int = 0):
    """llama_model_params with the known-crash workaround applied."""
    params = llama_cpp().llama_model_default_params()
    params.n_gpu_layers = gpu_layers
    if needs_amx_workaround():
        params.use_extra_bufts = False
    return params


_SILENT = None


def silence_logs() -> None:
    """Route llama.cpp's log lines to a no-op (kept referenced for the life of the process)."""
    global _SILENT
    lib = llama_cpp()
    if _SILENT is None:
        _SILENT = lib.llama_log_callback(lambda level, text, data: None)
        lib.llama_log_set(_SILENT, None)
