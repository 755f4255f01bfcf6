"""Untrusted safetensors headers: each loads or is refused with one QwdeployError line naming the file and
the problem, never another exception, a hang or an allocation sized by a lie."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwdeploy.toolkit.errors import CheckpointError
from qwdeploy.toolkit.safetensors_io import SafetensorsFile

from untrusted import entry, fifo, refused, st_file, unprivileged


@pytest.mark.parametrize("header, problem", [
    (entry(offsets=["0", "16"]), "data_offsets"),
    (entry(offsets=[0.0, 16.0]), "data_offsets"),
    (entry(offsets=[False, True]), "data_offsets"),
    (entry(offsets=[-16, 0]), "data_offsets"),
    (entry(offsets=[16, 0]), "data_offsets"),
    (entry(offsets=[0]), "data_offsets"),
    (entry(offsets=[0, 2**70]), "header lies"),
    (entry(dtype=["F32"]), "unsupported dtype"),
    (entry(dtype={"F32": 1}), "unsupported dtype"),
    (entry(dtype=7), "unsupported dtype"),
    (entry(shape=["4"]), "corrupt shape"),
    (entry(shape=[4.0]), "corrupt shape"),
    (entry(shape=[True]), "corrupt shape"),
    (entry(shape=[-4]), "corrupt shape"),
    (entry(shape=4), "corrupt shape"),
    (entry(shape=[1] * 40), "corrupt shape"),
    (entry(shape=[2**32, 2**32], offsets=[0, 2**66]), "overflows int64"),
    (entry(shape=[0, 2**64], offsets=[0, 0]), "overflows int64"),
    ({"t": [1, 2, 3]}, "corrupt header entry"),
    ({"t": "F32"}, "corrupt header entry"),
    ({**entry(), "__metadata__": ["format"]}, "__metadata__"),
    ({**entry(), "__metadata__": {"format": 1}}, "__metadata__"),
    (b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (b'{"t": ' + b"7" * 5000 + b"}", "not valid JSON"),
    (b'{"t": "\xff\xfe"}', "not UTF-8"),
    (b"[1, 2]", "must hold a JSON object"),
])
def test_bad_safetensors_headers(tmp_path, header, problem):
    path = st_file(tmp_path / "x.safetensors", header)
    refused(lambda: SafetensorsFile(path), CheckpointError, path, problem)


def test_safetensors_fifo_and_device_are_refused_without_opening(tmp_path):
    path = fifo(tmp_path / "model.safetensors")
    refused(lambda: SafetensorsFile(path), CheckpointError, path, "not a regular file")
    refused(lambda: SafetensorsFile(Path("/dev/zero")), CheckpointError, Path("/dev/zero"), "not a regular file")
    (tmp_path / "dir.safetensors").mkdir()
    refused(lambda: SafetensorsFile(tmp_path / "dir.safetensors"), CheckpointError, tmp_path / "dir.safetensors",
            "not a regular file")


def test_unreadable_safetensors(tmp_path):
    path = st_file(tmp_path / "x.safetensors", entry())
    SafetensorsFile(path)  # readable, it loads
    path.chmod(0)
    line = unprivileged(f"SafetensorsFile(Path({str(path)!r}))")
    assert line == f"{path}: cannot read (Permission denied)"
