"""Shared fixtures: tiny real Qwen checkpoints of every architecture, built once per session."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Callable

import pytest

from qwdeploy.toolkit.demo import ARCHS, build_demo_checkpoint
from qwdeploy.toolkit.layout import CACHE_ENV, cache_root

CheckpointFactory = Callable[..., Path]
TRAINED_ENV = "QWDEPLOY_TEST_TRAINED_ROOT"


def pytest_configure(config: pytest.Config) -> None:
    """The suite builds kernels and fills caches under its own root (kept between local runs, fresh in a
    clean clone), with two exceptions that are pure functions of their inputs and costly to remake: ONNX
    Runtime's headers (a copy the user's cache holds is reused rather than downloaded again) and the trained
    demo checkpoints (kept in the user's cache under the hash of the code that trains them)."""
    os.environ.setdefault(TRAINED_ENV, str(cache_root() / "trained"))  # workers inherit the user's
    from qwdeploy.kernels.ort_headers import ENV_VAR, ort_include
    from qwdeploy.toolkit.errors import QwdeployError

    if not os.environ.get(ENV_VAR):
        try:
            os.environ[ENV_VAR] = str(ort_include(fetch=False))
        except QwdeployError:
            pass  # the first build fetches them into the suite's cache
    os.environ[CACHE_ENV] = str(config.rootpath / ".pytest_cache" / "qwdeploy")
    config.addinivalue_line("markers", "fuzz: long property-based fuzzing of the untrusted-input readers (-m fuzz)")
    config.addinivalue_line("markers", "long: trains for many minutes, e.g. a second trained checkpoint (-m long)")


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> CheckpointFactory:
    """make_checkpoint(arch, size="tiny", dtype="bfloat16", seed=0, max_shard_bytes=...) → cached dir."""
    built: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("checkpoints")

    def make(arch: str, size: str = "tiny", dtype: str = "bfloat16", seed: int = 0, **kwargs) -> Path:
        key = (arch, size, dtype, seed, tuple(sorted(kwargs.items())))
        if key not in built:
            name = "-".join(str(k) for k in key[:4]) + "".join(f"-{k}{v}" for k, v in key[4])
            built[key] = build_demo_checkpoint(root / name, arch, size, dtype, seed, **kwargs)
        return built[key]

    return make


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny(make_checkpoint: CheckpointFactory, arch: str) -> Path:
    """The tiny checkpoint of the parametrised architecture (shared, read-only)."""
    return make_checkpoint(arch)


@pytest.fixture
def tiny_copy(tiny: Path, tmp_path: Path) -> Path:
    """A private copy a test may damage."""
    return Path(shutil.copytree(tiny, tmp_path / tiny.name))


@pytest.fixture(scope="session")
def kernel_library() -> Path:
    """The portable build of qwdeploy's kernel library (what CPU exports carry), built once (or found in the
    cache). A missing compiler or a failed build fails the tests that need it: scripts/install-system-deps.sh
    provides the tools."""
    from qwdeploy.kernels import library_path

    return Path(library_path("portable", build_if_missing=True))


GGUFTensorSpec = tuple[str, tuple[int, ...], int, int, bytes]  # name, dims (ne0 first), ggml type, offset, data


def _gguf_string(text: str) -> bytes:
    return struct.pack("<Q", len(text.encode())) + text.encode()


def build_gguf(kvs: list[tuple[str, int, bytes]], tensors: list[GGUFTensorSpec], *, magic: bytes = b"GGUF",
               version: int = 3, n_kv: int | None = None, n_tensors: int | None = None, alignment: int = 32) -> bytes:
    """GGUF bytes laid out by hand, so a test can make any field lie: each kv is (key, value type id,
    encoded value); each tensor's data lands at its offset in the aligned data section."""
    n_tensors = len(tensors) if n_tensors is None else n_tensors
    out = bytearray(magic + struct.pack("<IQQ", version, n_tensors, len(kvs) if n_kv is None else n_kv))
    for key, vtype, value in kvs:
        out += _gguf_string(key) + struct.pack("<I", vtype) + value
    for name, dims, qtype, offset, _ in tensors:
        out += _gguf_string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, qtype, offset)
    data_start = -(-len(out) // alignment) * alignment
    out += bytes(data_start - len(out))
    for _, _, _, offset, data in (t for t in tensors if t[4]):  # a tensor without data may claim any offset
        end = data_start + offset + len(data)
        out += bytes(max(0, end - len(out)))
        out[data_start + offset:end] = data
    return bytes(out)


@pytest.fixture(scope="session")
def make_gguf() -> Callable[..., bytes]:
    """build_gguf, for the reader tests (session-scoped: hypothesis tests may use it)."""
    return build_gguf


OPT_IN_MARKERS = ("fuzz", "long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long fuzz runs and tests that train for many minutes stay out of the default suite (deselected, not
    skipped); `-m fuzz` or `-m long` selects them."""
    asked = config.getoption("markexpr") or ""
    left_out = [m for m in OPT_IN_MARKERS if m not in asked]
    kept, deselected = [], []
    for item in items:
        (deselected if any(m in item.keywords for m in left_out) else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _training_sources_digest() -> str:
    """Hash of the code a trained checkpoint depends on: a change to any of it trains anew."""
    import hashlib

    import qwdeploy.toolkit.demo as demo
    import qwdeploy.toolkit.tokenizer as tokenizer
    import qwdeploy.toolkit.training as training

    files = sorted(Path(training.__file__).parent.glob("*.py")) + [Path(demo.__file__), Path(tokenizer.__file__)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def trained_checkpoint() -> CheckpointFactory:
    """trained_checkpoint(arch="qwen2") → the trained demo checkpoint (read-only), trained on first use (minutes)
    and kept in the user's cache under the hash of the code that trains it; parallel workers wait for one another."""
    from qwdeploy.toolkit.atomic import build_once
    from qwdeploy.toolkit.training import build_trained_checkpoint

    digest = _training_sources_digest()

    def make(arch: str = "qwen2") -> Path:
        directory = Path(os.environ[TRAINED_ENV]) / f"{arch}-{digest}"
        build_once(directory, lambda: (directory / "model.safetensors").is_file(), False,
                   lambda staging: build_trained_checkpoint(staging, arch, force=True))
        return directory

    return make
