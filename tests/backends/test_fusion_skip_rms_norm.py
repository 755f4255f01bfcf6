"""skip_rms_norm: residual Add + norm becomes SkipSimplifiedLayerNormalization, its sum still feeds the residual."""

import numpy as np

from qwdeploy.backends.ort.fusions import rms_norm, skip_rms_norm

from backend_helpers import fuse, ops, run
from fusion_graphs import HIDDEN, norm_graph


def test_skip_rms_norm_fuses_and_matches():
    rng = np.random.default_rng(1)
    unfused = norm_graph(residual=True, rng=rng)
    fused, (_, report) = fuse(unfused, rms_norm, skip_rms_norm)
    assert report.count == 1
    assert sorted(ops(fused)) == ["Identity", "Relu", "SkipSimplifiedLayerNormalization"]
    feeds = {n: rng.standard_normal((2, 5, HIDDEN)).astype(np.float32) for n in ("a", "b")}
    for ours, theirs in zip(run(fused, feeds), run(unfused, feeds)):
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_skip_rms_norm_rejects_a_constant_addend():
    fused, (_, report) = fuse(norm_graph(residual=True, rng=np.random.default_rng(1), bias_const=True),
                              rms_norm, skip_rms_norm)
    assert report.count == 0
    assert "SimplifiedLayerNormalization" in ops(fused)
    assert any("constant" in why for _, why in report.rejections)
