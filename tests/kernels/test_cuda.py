"""CUDA kernels: they compile for sm_87 and sm_90 with nvcc here; numbers are checked where a GPU
and onnxruntime's CUDA execution provider exist."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kernel_cases import Case, all_cases, assert_within
from qwdeploy.kernels.build import Build
from qwdeploy.kernels.graphs import run_node

# The CUDA QuantSwiGLU reads float32 scales and takes no norm in front: it refuses float16 ones and norms (only
# CPU graphs carry them).
CASES = [c for c in all_cases(seed=2)
         if not c.sizes.get("half_scales") and not (c.op == "QuantSwiGLU" and "norm_weight" in c.inputs)]
# Ops whose CUDA kernel declines accuracy_level 4's permission and computes in float (QuantLinear and
# GroupQueryAttention have no CUDA kernel: ONNX Runtime places them on the CPU, which takes the permission).
FLOAT_ON_CUDA = {"QuantSwiGLU"}


def test_cuda_library_builds_for_sm87_and_sm90(cuda_build: Build):
    assert cuda_build.target.cuda_archs == ("87", "90")
    data = cuda_build.library.read_bytes()
    assert b"CUDAExecutionProvider" in data
    for arch in (b"sm_87", b"sm_90"):  # the fatbin names the architectures it holds
        assert arch in data


def _cuda_provider_or_skip() -> None:
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDA execution provider in this onnxruntime (needs onnxruntime-gpu and a GPU)")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cuda_op_matches_reference(case: Case, cuda_build: Build):
    _cuda_provider_or_skip()
    outputs = run_node(case.op, case.inputs, case.attributes, cuda_build.library,
                       providers=("CUDAExecutionProvider", "CPUExecutionProvider"), outputs=case.outputs)
    if case.op in FLOAT_ON_CUDA:
        case = replace(case, attributes={**case.attributes, "accuracy_level": 0})
    for got, want, bound in zip(outputs, case.expected(), case.bounds(), strict=True):
        assert_within(got, want, bound * 10, case.name)  # __expf, other sum order
