"""Every op, run by ONNX Runtime as a `qwdeploy` node with the host library registered, against numpy."""

from __future__ import annotations

import numpy as np
import onnx  # noqa: F401  (the dev install has onnx and onnxruntime: missing is a failure, not a skip)
import onnxruntime  # noqa: F401
import pytest

from kernel_cases import AVX512_VNNI, Case, all_cases, assert_within, prefill_here
from qwdeploy.kernels.build import Build
from qwdeploy.kernels.graphs import node_model, run_node, session
from qwdeploy.kernels.library import loaded_variant
from qwdeploy.kernels.targets import PORTABLE_VARIANTS, host_arch
from qwdeploy.toolkit.runtimes.llamacpp.native import cpu_flags

CASES = all_cases()
VARIANTS = [name for name, _ in PORTABLE_VARIANTS[host_arch()]]
VARIANT_ENV = "QWDEPLOY_KERNELS_VARIANT"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_matches_reference(case: Case, host_build: Build):
    outputs = run_node(case.op, case.inputs, case.attributes, host_build.library, outputs=case.outputs)
    prefill = prefill_here()
    for got, want, bound in zip(outputs, case.expected(prefill), case.bounds(prefill), strict=True):
        assert got.dtype == want.dtype  # float32, or a float16 cache's present
        assert_within(got, want, bound, case.name)


def test_every_op_is_covered():
    from qwdeploy.kernels.schemas import SCHEMAS

    assert {c.op for c in CASES} == set(SCHEMAS)


def test_bad_shape_is_a_clear_error(host_build: Build):
    import onnxruntime as ort

    case = next(c for c in CASES if c.op == "QuantSwiGLU")
    attrs = dict(case.attributes, K=case.attributes["K"] + 1)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="QuantSwiGLU: X has shape"):
        run_node(case.op, case.inputs, attrs, host_build.library)


def test_norm_inputs_that_do_not_fit_are_clear_errors(host_build: Build):
    import onnxruntime as ort

    case = next(c for c in CASES if c.op == "QuantLinear" and c.inputs.get("skip") is not None)
    weight = case.inputs["norm_weight"]
    for inputs, outputs, message in ((dict(case.inputs, norm_weight=None), ["Y"], "skip is given without norm_weight"),
                                     (dict(case.inputs, skip=None), ["Y", "sum"], "the sum output needs skip"),
                                     (dict(case.inputs, norm_weight=weight[:-1]), ["Y"], "norm_weight has shape"),
                                     (dict(case.inputs, skip=case.inputs["X"][..., :-1]), ["Y"], "skip has shape")):
        with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match=f"QuantLinear: {message}"):
            run_node(case.op, inputs, case.attributes, host_build.library, outputs=outputs)


@pytest.mark.parametrize("op", ["QKNormRotary", "QKNormRotaryPacked"])
def test_position_outside_cache_is_refused(host_build: Build, op: str):
    import onnxruntime as ort

    case = next(c for c in CASES if c.op == op)
    inputs = dict(case.inputs, position_ids=np.full_like(case.inputs["position_ids"], 10_000))
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="outside the cos/sin cache"):
        run_node(case.op, inputs, case.attributes, host_build.library)


def test_index_outside_the_table_is_refused(host_build: Build):
    import onnxruntime as ort

    case = next(c for c in CASES if c.op == "QuantGather")
    rows = case.attributes["N"]
    for bad in (rows, -rows - 1):
        indices = case.inputs["indices"].copy()
        indices.reshape(-1)[-1] = bad
        with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                           match=rf"QuantGather: index {bad} at position \d+ is outside \[-{rows}, {rows}\)"):
            run_node(case.op, dict(case.inputs, indices=indices), case.attributes, host_build.library)


def _runnable_here() -> list[str]:
    """The portable builds this CPU can run, best first, from the kernel's own account of it (/proc/cpuinfo):
    an oracle independent of the dispatcher's checks."""
    text = open("/proc/cpuinfo").read()
    if host_arch() != "x86_64":
        return ["dotprod", "baseline"] if "asimddp" in text.split() else ["baseline"]
    flags = cpu_flags()
    avx2 = {"avx2", "fma", "f16c"} <= flags
    runs = {"avx512_vnni": avx2 and AVX512_VNNI <= flags,
            "avx_vnni": avx2 and "avx_vnni" in flags, "avx2": avx2, "baseline": True}
    return [name for name in VARIANTS if runs[name]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_portable_variant_this_cpu_runs_matches_reference(portable_build: Build, variant: str, monkeypatch):
    """The portable library (what CPU exports carry) hands registration to its best build for the CPU; each
    lesser build this CPU also runs, chosen through QWDEPLOY_KERNELS_VARIANT, computes the same numbers."""
    assert all(path.is_file() for path in portable_build.libraries())
    if variant not in _runnable_here():
        pytest.skip(f"this CPU lacks the instructions of the {variant} build")
    monkeypatch.setenv(VARIANT_ENV, variant)
    assert loaded_variant(portable_build.library) == variant  # the dispatcher knows the name and takes it
    for case in CASES:
        outputs = run_node(case.op, case.inputs, case.attributes, portable_build.library, outputs=case.outputs)
        prefill = prefill_here(variant == "avx512_vnni")
        for got, want, bound in zip(outputs, case.expected(prefill), case.bounds(prefill), strict=True):
            assert_within(got, want, bound, f"{variant}: {case.name}")


def test_portable_library_picks_the_best_build_this_cpu_runs(portable_build: Build, monkeypatch):
    monkeypatch.delenv(VARIANT_ENV, raising=False)
    assert loaded_variant(portable_build.library) == _runnable_here()[0]
    monkeypatch.setenv(VARIANT_ENV, "no-such-build")
    with pytest.raises(Exception, match="runs on this CPU as QWDEPLOY_KERNELS_VARIANT asks"):
        run_node(CASES[0].op, CASES[0].inputs, CASES[0].attributes, portable_build.library)


GQA_CASES = [c for c in CASES if c.op == "GroupQueryAttention"]
# ONNX Runtime's CPU kernel requires head_dim % 8 == 0, knows no bf16_products, and takes its cache in the
# query's type
OURS_GQA_CASES = [c for c in GQA_CASES if c.sizes["head_dim"] % 8 == 0 and "bf16_products" not in c.attributes]
ORT_GQA_CASES = [c for c in OURS_GQA_CASES if not c.sizes["half_cache"]]


@pytest.mark.parametrize("case", ORT_GQA_CASES, ids=[c.name for c in ORT_GQA_CASES])
def test_attention_matches_onnxruntimes_group_query_attention(case: Case, host_build: Build):
    """Our kernel and ONNX Runtime's com.microsoft GroupQueryAttention, on the same node and inputs: the
    same outputs for every real (not right-padding) token, the same present caches."""
    from onnx import helper

    model = onnx.load_from_string(node_model(case.op, case.inputs, case.attributes))
    model.graph.node[0].domain = "com.microsoft"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    feeds = {name: value for name, value in case.inputs.items() if value is not None}
    theirs = session(model.SerializeToString(), host_build.library).run(None, feeds)
    ours = run_node(case.op, case.inputs, case.attributes, host_build.library)
    seq, real = case.sizes["seq"], case.inputs["seqlens_k"] + 1
    for b, length in enumerate(real):
        rows = seq if case.sizes["past"] else min(seq, length)  # a first prompt's padding rows are undefined
        np.testing.assert_allclose(ours[0][b, :rows], theirs[0][b, :rows], atol=2e-5, rtol=1e-4)
    for got, want in zip(ours[1:], theirs[1:], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


BF16_GQA_CASES = [c for c in GQA_CASES if c.attributes.get("bf16_products")]


@pytest.mark.skipif("avx512_bf16" not in cpu_flags(), reason="this CPU lacks AVX512-BF16")
@pytest.mark.parametrize("case", BF16_GQA_CASES, ids=[c.name for c in BF16_GQA_CASES])
def test_attention_bf16_products_run_where_the_cpu_has_them(case: Case, host_build: Build):
    """With bf16_products a prompt (8 new tokens or more: a query block) with head sizes of whole AVX-512
    vectors moves off the float32 kernel's output (the bf16 path ran), by no more than bf16 rounding of the
    operands explains; anything else computes exactly what float32 does, and the caches, written before any
    product, always do."""
    float32 = {k: v for k, v in case.attributes.items() if k != "bf16_products"}
    ours = run_node(case.op, case.inputs, case.attributes, host_build.library)
    want = run_node(case.op, case.inputs, float32, host_build.library)
    for got, exact in zip(ours[1:], want[1:], strict=True):
        np.testing.assert_array_equal(got, exact)
    if case.sizes["seq"] < 8 or case.sizes["head_dim"] % 16:
        np.testing.assert_array_equal(ours[0], want[0])
        return
    rows = case.sizes["seq"] if case.sizes["past"] else min(case.sizes["seq"], int(case.inputs["seqlens_k"].min()) + 1)
    moved, size = np.abs(ours[0][:, :rows] - want[0][:, :rows]), np.abs(want[0][:, :rows])
    assert moved.max() > 0
    # Operands rounded to 8 significant bits (2^-9 relative at most): ~0.3% of a typical output.
    assert moved.mean() < 4e-3 * size.mean()
    assert moved.max() < 1e-2 * size.max()


SHARED_GQA_CASES = [(c, domain) for c in OURS_GQA_CASES if c.sizes["past"] or c.sizes["batch"] == 1
                    for domain in ("qwdeploy", "com.microsoft") if domain == "qwdeploy" or c in ORT_GQA_CASES]


@pytest.mark.parametrize(("case", "domain"), SHARED_GQA_CASES, ids=[f"{c.name}-{d}" for c, d in SHARED_GQA_CASES])
def test_attention_on_a_shared_past_present_buffer(case: Case, domain: str, host_build: Build):
    """past and present bound to one buffer longer than the total (ONNX Runtime's past_present_share_buffer,
    what the runners do): our kernel writes the new keys and values in place, leaves the rest of the buffer
    alone and computes what the concatenating call does, as ONNX Runtime's own kernel does."""
    import onnxruntime as ort
    from onnx import helper

    capacity = case.sizes["total"] + 7
    rng = np.random.default_rng(3)
    past = case.sizes["past"]
    buffers = {}
    for name in ("past_key", "past_value"):
        buffer = rng.standard_normal((*case.inputs[name].shape[:2], capacity, case.sizes["head_dim"]))
        buffer = buffer.astype(case.inputs[name].dtype)
        buffer[:, :, :past] = case.inputs[name]
        buffers[name] = buffer
    inputs = dict(case.inputs, **buffers)
    model = onnx.load_from_string(node_model(case.op, inputs, case.attributes))
    if domain == "com.microsoft":
        model.graph.node[0].domain = domain
        model.opset_import.append(helper.make_opsetid(domain, 1))
    sess = session(model.SerializeToString(), host_build.library)
    binding = sess.io_binding()
    binding.bind_output("output")
    for name, value in inputs.items():
        if value is None:
            continue
        if name in buffers:
            shared = ort.OrtValue.ortvalue_from_numpy(value)
            binding.bind_ortvalue_input(name, shared)
            binding.bind_ortvalue_output(name.replace("past", "present"), shared)
            buffers[name] = shared
        else:
            binding.bind_cpu_input(name, value)
    sess.run_with_iobinding(binding)
    output = binding.copy_outputs_to_cpu()[0]
    want_output, *want_present = case.expected()
    output_bound, *bounds = case.bounds()
    for b, length in enumerate(case.inputs["seqlens_k"] + 1):
        rows = case.sizes["seq"] if past else min(case.sizes["seq"], length)
        assert_within(output[b, :rows], want_output[b, :rows], output_bound[b, :rows], "output")
        for name, want, bound in zip(("past_key", "past_value"), want_present, bounds, strict=True):
            got = buffers[name].numpy()
            assert_within(got[b, :, :length], want[b, :, :length], bound[b, :, :length], name)
            if domain == "qwdeploy":
                np.testing.assert_array_equal(got[b, :, past + case.sizes["seq"]:], inputs[name][b, :, past + case.sizes["seq"]:])


def test_attention_refuses_lengths_the_cache_cannot_hold(host_build: Build):
    import onnxruntime as ort

    case = next(c for c in GQA_CASES if c.sizes["past"] and c.sizes["seq"] == 1)
    inputs = dict(case.inputs, seqlens_k=case.inputs["seqlens_k"] + 5)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="seqlens_k.* does not fit"):
        run_node(case.op, inputs, case.attributes, host_build.library)
    last = case.sizes["total"] - 1  # the newest token's position: one row short of it in the caches
    inputs = dict(case.inputs, cos_cache=case.inputs["cos_cache"][:last], sin_cache=case.inputs["sin_cache"][:last])
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="outside the cos/sin cache"):
        run_node(case.op, inputs, case.attributes, host_build.library)


def test_attention_refuses_norm_weights_that_do_not_fit(host_build: Build):
    import onnxruntime as ort

    case = next(c for c in GQA_CASES if c.inputs.get("q_norm_weight") is not None)
    lone = dict(case.inputs, k_norm_weight=None)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="come together"):
        run_node(case.op, lone, case.attributes, host_build.library)
    short = dict(case.inputs, q_norm_weight=case.inputs["q_norm_weight"][:-1])
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match=r"must be \[head_dim = "):
        run_node(case.op, short, case.attributes, host_build.library)
