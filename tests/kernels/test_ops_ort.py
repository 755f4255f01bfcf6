"""Every op, run by ONNX Runtime as a `qwdeploy` node with the host library registered, against numpy."""

from __future__ import annotations

import numpy as np
import onnx  # noqa: F401  (the dev install has onnx and onnxruntime: missing is a failure, not a skip)
import onnxruntime  # noqa: F401
import pytest

from kernel_cases import Case, all_cases
from qwdeploy.kernels.build import Build
from qwdeploy.kernels.graphs import run_node

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_matches_reference(case: Case, host_build: Build):
    outputs = run_node(case.op, case.inputs, case.attributes, host_build.library)
    for got, want in zip(outputs, case.expected(), strict=True):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=case.atol, rtol=case.rtol)


def test_every_op_is_covered():
    from qwdeploy.kernels.schemas import SCHEMAS

    assert {c.op for c in CASES} == set(SCHEMAS)


def test_bad_shape_is_a_clear_error(host_build: Build):
    import onnxruntime as ort

    case = next(c for c in CASES if c.op == "QuantSwiGLU")
    attrs = dict(case.attributes, K=case.attributes["K"] + 1)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="QuantSwiGLU: X has shape"):
        run_node(case.op, case.inputs, attrs, host_build.library)


@pytest.mark.parametrize("op", ["QKNormRotary", "QKNormRotaryPacked"])
def test_position_outside_cache_is_refused(host_build: Build, op: str):
    import onnxruntime as ort

    case = next(c for c in CASES if c.op == op)
    inputs = dict(case.inputs, position_ids=np.full_like(case.inputs["position_ids"], 10_000))
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="outside the cos/sin cache"):
        run_node(case.op, inputs, case.attributes, host_build.library)
