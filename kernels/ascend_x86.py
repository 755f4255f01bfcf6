"""An Ascend kernel lowered to an x86-64 shared library, so its host tiling function and its tiled kernel run
here (kernels/ascend_check.py calls them).

The input is the tensor-level IR an Ascend build keeps (after convert-hfusion-to-hivm: tiled for the SoC's
unified buffer, split across its AI cores, not yet bufferized). bishengir-opt's execution-engine passes turn
its HIVM/HFusion ops into upstream ones and upstream passes take it to the LLVM dialect; then
mlir-translate-19 and llc-19 (Debian's mlir-19-tools and llvm-19: bishengir is built on LLVM 19.1.7) and a C
compiler make the library, with a small memrefCopy in place of MLIR's C runner utils.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ..toolkit.errors import MissingDependencyError, QwdeployError
from .ascend_build import tools as bishengir_tools

INSTALL_LLVM = "apt-get install mlir-19-tools llvm-19"
LLVM_TOOLS = {"translate": ("mlir-translate-19", INSTALL_LLVM), "llc": ("llc-19", INSTALL_LLVM),
              "cc": ("cc", "apt-get install gcc")}

# bishengir-opt passes, in order: HIVM and HFusion ops to upstream ones, then the usual road to the LLVM dialect.
LOWERING = (
    "--execution-engine-convert-hfusion-to-upstream",
    "--execution-engine-convert-hivm-to-upstream",
    "--annotation-lowering",
    "--decompose-tensor-concat",  # upstream bufferization has no tensor.concat in LLVM 19
    "--one-shot-bufferize=bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map",
    "--convert-linalg-to-loops",
    "--expand-strided-metadata",  # before lower-affine: it emits affine.apply
    "--lower-affine",
    "--finalize-memref-to-llvm",
    "--convert-scf-to-cf",
    "--convert-cf-to-llvm",
    "--convert-arith-to-llvm",
    "--convert-math-to-llvm",
    "--convert-index-to-llvm",
    "--llvm-request-c-wrappers",  # _mlir_ciface_* entry points: memrefs passed as descriptor pointers
    "--convert-func-to-llvm",
    "--reconcile-unrealized-casts",
)

# The one runtime symbol the lowered code needs: a strided copy between two memrefs of any rank.
MEMREF_COPY_C = r"""
#include <stdint.h>
#include <string.h>

typedef struct { int64_t rank; void *descriptor; } UnrankedMemRef;
typedef struct { char *allocated; char *aligned; int64_t offset; int64_t sizes_then_strides[]; } Descriptor;

void memrefCopy(int64_t element_size, UnrankedMemRef *source, UnrankedMemRef *target) {
  const Descriptor *from = source->descriptor, *to = target->descriptor;
  const int64_t rank = source->rank, *sizes = from->sizes_then_strides;
  const int64_t *from_strides = sizes + rank, *to_strides = to->sizes_then_strides + rank;
  int64_t count = 1;
  for (int64_t axis = 0; axis < rank; ++axis) count *= sizes[axis];
  for (int64_t flat = 0; flat < count; ++flat) {
    int64_t rest = flat, from_offset = from->offset, to_offset = to->offset;
    for (int64_t axis = rank - 1; axis >= 0; --axis) {
      const int64_t index = rest % sizes[axis];
      rest /= sizes[axis];
      from_offset += index * from_strides[axis];
      to_offset += index * to_strides[axis];
    }
    memcpy(to->aligned + to_offset * element_size, from->aligned + from_offset * element_size, (size_t)element_size);
  }
}
"""


def llvm_tools() -> dict[str, str]:
    """The LLVM 19 tools and C compiler the lowering runs, checked to exist; a missing one says what to install."""
    found = {}
    for role, (tool, install) in LLVM_TOOLS.items():
        path = shutil.which(tool)
        if not path:
            raise MissingDependencyError(f"'{tool}' not found; install it: {install}")
        found[role] = path
    return found


def lower(stage_ir: Path, workdir: Path) -> Path:
    """stage_ir (an AscendBuild's stage.mlir) → workdir/kernel.so, with every intermediate file beside it."""
    tools = llvm_tools()
    opt = bishengir_tools().opt
    workdir.mkdir(parents=True, exist_ok=True)
    llvm_dialect, translatable = workdir / "kernel.llvm.mlir", workdir / "kernel.translatable.mlir"
    llvm_ir, objects, copy_source = workdir / "kernel.ll", workdir / "kernel.o", workdir / "memref_copy.c"
    library = workdir / "kernel.so"
    _run([opt, str(stage_ir), *LOWERING, "-o", str(llvm_dialect)])
    translatable.write_text(_without_target_spec(llvm_dialect.read_text()))
    # hacc/hfusion attributes stay on functions and arguments: unregistered, they parse as opaque and are dropped.
    _run([tools["translate"], "--allow-unregistered-dialect", "--mlir-to-llvmir", str(translatable),
          "-o", str(llvm_ir)])
    _run([tools["llc"], "-O2", "-filetype=obj", "-relocation-model=pic", str(llvm_ir), "-o", str(objects)])
    copy_source.write_text(MEMREF_COPY_C)
    _run([tools["cc"], "-O2", "-shared", "-fPIC", str(objects), str(copy_source), "-lm", "-o", str(library)])
    return library


def _without_target_spec(module: str) -> str:
    """The module's DLTI target spec nests bishengir's device spec, which upstream DLTI refuses to parse even
    as an unregistered attribute; the x86 code does not read it."""
    return re.sub(r"^module attributes \{.*\} \{$", "module {", module, count=1, flags=re.M)


def _run(command: list[str]) -> None:
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        lines = run.stderr.splitlines()
        errors = [line for line in lines if "error:" in line][:5] or lines[-5:]
        tool = Path(command[0]).name
        raise QwdeployError(f"{tool} failed lowering an Ascend kernel to x86:\n  " + "\n  ".join(errors))
