from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from qwdeploy.toolkit.errors import CheckpointError
from qwdeploy.toolkit.safetensors_io import DTYPES, SafetensorsFile, TensorPlan, write_safetensors


@pytest.fixture
def arrays():
    rng = np.random.default_rng(7)
    return {
        "a": rng.standard_normal((3, 5)).astype(np.float32),
        "b": rng.standard_normal((7,)).astype(np.float16),
        "c": rng.standard_normal((2, 3, 4)).astype(DTYPES["BF16"]),
        "d": rng.integers(-100, 100, (4,)).astype(np.int64),
    }


def _write(path, arrays):
    plans = [TensorPlan(n, a.dtype, a.shape) for n, a in arrays.items()]
    write_safetensors(path, plans, iter(arrays.values()), metadata={"format": "pt"})


def test_roundtrip_every_dtype(tmp_path, arrays):
    _write(tmp_path / "x.safetensors", arrays)
    st = SafetensorsFile(tmp_path / "x.safetensors")
    assert st.metadata == {"format": "pt"}
    for name, array in arrays.items():
        got = st.tensor(name)
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got.astype(np.float64), array.astype(np.float64))


def test_the_safetensors_package_reads_what_we_write(tmp_path, arrays):
    import safetensors.numpy as safetensors_numpy
    arrays.pop("c")  # the package's numpy API has no bfloat16
    _write(tmp_path / "x.safetensors", arrays)
    loaded = safetensors_numpy.load_file(tmp_path / "x.safetensors")
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)


def _header_file(path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    "header, data, message",
    [
        ({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, bytes(16), "header lies"),
        ({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8), "truncated"),
        ({"t": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}}, bytes(16), "unsupported dtype"),
        ({"t": {"shape": [4]}}, bytes(16), "corrupt header entry"),
        (
            {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "u": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
            bytes(16),
            "overlap",
        ),
    ],
)
def test_bad_headers_name_the_file_and_problem(tmp_path, header, data, message):
    path = tmp_path / "bad.safetensors"
    _header_file(path, header, data)
    with pytest.raises(CheckpointError, match=message) as exc:
        SafetensorsFile(path)
    assert str(path) in str(exc.value)


def test_truncated_file(tmp_path, arrays):
    path = tmp_path / "x.safetensors"
    _write(path, arrays)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        SafetensorsFile(path)


def test_short_and_garbage_files(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="too short"):
        SafetensorsFile(tmp_path / "short.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        SafetensorsFile(tmp_path / "huge.safetensors")
    (tmp_path / "json.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        SafetensorsFile(tmp_path / "json.safetensors")
