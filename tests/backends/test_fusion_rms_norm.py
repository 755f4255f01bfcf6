"""rms_norm: the portable RMSNorm becomes one SimplifiedLayerNormalization with the same output."""

import numpy as np

from qwdeploy.backends.ort.fusions import rms_norm

from backend_helpers import fuse, ops, run
from fusion_graphs import HIDDEN, norm_graph


def test_rms_norm_fuses_and_matches():
    rng = np.random.default_rng(0)
    unfused = norm_graph(residual=False, rng=rng)
    fused, (report,) = fuse(unfused, rms_norm)
    assert report.count == 1
    assert ops(fused) == ["SimplifiedLayerNormalization", "Identity"]
    feeds = {"a": rng.standard_normal((2, 5, HIDDEN)).astype(np.float32)}
    np.testing.assert_allclose(run(fused, feeds)[0], run(unfused, feeds)[0], atol=1e-5, rtol=0)


def test_rms_norm_rejects_mean_over_other_axes():
    unfused = norm_graph(residual=False, rng=np.random.default_rng(0))
    mean = next(n for n in unfused.graph.node if n.op_type == "ReduceMean")
    next(a for a in mean.attribute if a.name == "axes").ints[:] = [-2]  # opset 17: axes is an attribute
    fused, (report,) = fuse(unfused, rms_norm)
    assert report.count == 0
    assert any("not the last axis" in why for _, why in report.rejections)
