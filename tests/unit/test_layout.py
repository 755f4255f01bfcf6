"""One cache root, one environment variable, for kernels, headers, the tokenizer and the bandwidth."""

from pathlib import Path

from qwdeploy.kernels.build import planned
from qwdeploy.kernels.targets import resolve_target
from qwdeploy.toolkit.layout import cache_root


def test_the_cache_root_follows_qwdeploy_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("QWDEPLOY_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "qwdeploy"
    monkeypatch.setenv("QWDEPLOY_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("QWDEPLOY_CACHE")
    assert cache_root() == Path.home() / ".cache" / "qwdeploy"


def test_kernel_builds_live_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("QWDEPLOY_CACHE", str(tmp_path))
    assert planned(resolve_target("host", None)).directory.parent == tmp_path / "kernels"
