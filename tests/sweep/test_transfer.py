"""What travels between nodes is checked on arrival: packed bytes unpack whole only when their content hashes
as recorded, and a file on a shared path that changed since its export is refused. No Ray needed."""

from __future__ import annotations

import os
import shutil

import pytest

from qwdeploy.toolkit.errors import ArtifactError
from qwdeploy.toolkit.sweep.state import digest, fingerprint
from qwdeploy.toolkit.sweep.transfer import Parcel, arrived, pack, unpack


@pytest.fixture
def folder(tmp_path):
    source = tmp_path / "source" / "artifact"
    (source / "sub").mkdir(parents=True)
    (source / "model.onnx").write_bytes(b"graph")
    (source / "sub" / "weights.bin").write_bytes(os.urandom(4096))
    return source


def test_a_packed_folder_arrives_whole_and_identical(folder, tmp_path):
    placed = unpack(pack(folder), tmp_path / "node", folder.name, digest(folder))
    assert placed == tmp_path / "node" / folder.name and digest(placed) == digest(folder)
    assert sorted(p.name for p in (tmp_path / "node").iterdir()) == [folder.name]  # no scratch left behind


def test_bytes_changed_on_the_way_are_refused_and_nothing_is_placed(folder, tmp_path):
    blob = bytearray(pack(folder))
    blob[blob.index(b"graph")] ^= 1
    with pytest.raises(ArtifactError, match="changed or damaged on the way"):
        unpack(bytes(blob), tmp_path / "node", folder.name, digest(folder))
    assert not (tmp_path / "node" / folder.name).exists()


def test_a_file_on_a_shared_path_is_checked_before_use(folder):
    weights = folder / "sub" / "weights.bin"
    parcel = Parcel(weights.name, digest(weights), path=weights)
    with arrived(parcel) as path:
        assert path == weights
    weights.write_bytes(b"another export")
    with pytest.raises(ArtifactError, match="changed or damaged on the way"):
        with arrived(parcel):
            pass


def test_a_checkpoint_on_a_shared_path_is_checked_by_fingerprint(checkpoints, tmp_path):
    copy = shutil.copytree(checkpoints / "qwen2", tmp_path / "qwen2")
    parcel = Parcel(copy.name, fingerprint(copy), path=copy, light=True)
    with arrived(parcel):
        pass
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    with pytest.raises(ArtifactError):
        with arrived(parcel):
            pass
