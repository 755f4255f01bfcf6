"""Bundle archives: packing is deterministic and round-trips; a hostile archive is refused by name, in one
line, with nothing written anywhere."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from qwdeploy.toolkit.bundle.archive import open_bundle, pack, unpack
from qwdeploy.toolkit.errors import ArtifactError, OutputError

LIMIT = 1 << 20
BOMB_BYTES = 50 * 2**20


def _random(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(n)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    (folder / "weights" / "empty").mkdir(parents=True)
    (folder / "manifest.json").write_bytes(b'{"name": "demo"}\n')
    (folder / "weights" / "model.gguf").write_bytes(_random(300_000, 1))
    (folder / "weights" / "tok\u00e9nizer.json").write_bytes(_random(1_000, 2))
    (folder / "b.txt").write_bytes(b"second")
    return folder


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def _listing(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*"))


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def _archive(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _refused(archive: Path, dest: Path, problem: str, max_bytes: int = LIMIT) -> str:
    """unpack must refuse in one line naming the archive, leaving every folder as it was; return the line."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    before = _listing(dest.parent.parent)
    with pytest.raises(ArtifactError) as caught:
        unpack(archive, dest, max_bytes)
    message = str(caught.value)
    assert message.startswith(f"{archive}: ") and "\n" not in message, message
    assert problem in message, message
    assert not dest.exists()
    assert _listing(dest.parent.parent) == before
    return message


def test_round_trip_is_byte_identical_and_deterministic(bundle: Path, tmp_path: Path) -> None:
    first = pack(bundle, tmp_path / "one.tar.gz")
    # Times and modes on disk must not reach the archive.
    os.utime(bundle / "b.txt", (1_000_000, 1_000_000))
    os.chmod(bundle / "b.txt", 0o600)
    second = pack(bundle, tmp_path / "two.tar.gz")
    assert first.read_bytes() == second.read_bytes()

    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["b.txt", "manifest.json", "weights", "weights/empty", "weights/model.gguf",
                     "weights/tok\u00e9nizer.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.name: m.mode for m in members if m.isdir()} == {"weights": 0o755, "weights/empty": 0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}

    out = unpack(first, tmp_path / "out" / "bundle", 10 * LIMIT)
    assert _tree(out) == _tree(bundle)


def test_pack_refuses_links_and_special_files(bundle: Path, tmp_path: Path) -> None:
    (bundle / "weights" / "link").symlink_to("model.gguf")
    with pytest.raises(ArtifactError, match="is a symbolic link"):
        pack(bundle, tmp_path / "b.tar.gz")
    (bundle / "weights" / "link").unlink()
    os.mkfifo(bundle / "pipe")
    with pytest.raises(ArtifactError, match="is a FIFO"):
        pack(bundle, tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()


def test_pack_refuses_an_output_inside_the_folder(bundle: Path) -> None:
    before = _listing(bundle)
    with pytest.raises(OutputError, match="inside the input"):
        pack(bundle, bundle / "weights" / "self.tar.gz")
    assert _listing(bundle) == before


DATA = _random(2_000, 3)

TAMPERED = {
    "dotdot": ([_member("weights/../../escaped.bin", data=DATA)], "climbs out of the bundle"),
    "symlink": ([_member("model.gguf", tarfile.SYMTYPE, linkname="/etc/passwd")], "is a symbolic link"),
    "hardlink": ([_member("a.bin", data=DATA), _member("b.bin", tarfile.LNKTYPE, linkname="a.bin")],
                 "is a hard link"),
    "device": ([_member("tty", tarfile.CHRTYPE, devmajor=5, devminor=0)], "is a character device"),
    "block": ([_member("disk", tarfile.BLKTYPE, devmajor=8, devminor=0)], "is a block device"),
    "fifo": ([_member("pipe", tarfile.FIFOTYPE)], "is a FIFO"),
    "duplicate": ([_member("manifest.json", data=DATA), _member("./manifest.json", data=DATA[::-1])],
                  "appears twice"),
    "file-then-folder": ([_member("w", data=DATA), _member("w/x.bin", data=DATA)], "clashes"),
    # Under the limit up to its header, so the declared size is what refuses it, before any content is read.
    "declared-size": ([_member("b.bin", data=_random(20_000, 7))],
                      "declared size to 20500 bytes, over the limit of 10000"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_unpack_refuses_tampered_members(case: str, tmp_path: Path) -> None:
    members, problem = TAMPERED[case]
    archive = _archive(tmp_path / "in" / f"{case}.tar.gz", _member("ok.bin", data=_random(500, 4)), *members)
    message = _refused(archive, tmp_path / "out" / "bundle", problem,
                       max_bytes=10_000 if case == "declared-size" else LIMIT)
    assert f"member {members[-1][0].name!r} " in message


def test_unpack_refuses_absolute_paths(tmp_path: Path) -> None:
    # Aimed at the destination's own parent, so a naive extractor would visibly write there.
    target = tmp_path / "out" / "absolute.bin"
    archive = _archive(tmp_path / "in" / "abs.tar.gz", _member(str(target), data=DATA))
    _refused(archive, tmp_path / "out" / "bundle", f"member {str(target)!r} has an absolute path")


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(tarfile.PAX_FORMAT)


def _zeros(out: gzip.GzipFile, n: int) -> None:
    block = bytes(1 << 20)
    for _ in range(n // len(block)):
        out.write(block)


def test_unpack_refuses_an_honest_member_larger_than_the_limit(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "big.tar.gz"
    archive.parent.mkdir()
    with gzip.open(archive, "wb") as out:
        out.write(_header("weights.bin", BOMB_BYTES))
        _zeros(out, BOMB_BYTES)
        out.write(bytes(1024))
    assert archive.stat().st_size < LIMIT
    _refused(archive, tmp_path / "out" / "bundle", f"member 'weights.bin' brings the declared size to {BOMB_BYTES}")


def test_unpack_stops_a_bomb_whose_headers_understate_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The header declares a small member; 50 MB of zeros follow, which only counting decompressed bytes sees.
    archive = tmp_path / "in" / "bomb.tar.gz"
    archive.parent.mkdir()
    with gzip.open(archive, "wb") as out:
        out.write(_header("weights.bin", 512))
        _zeros(out, BOMB_BYTES)
    assert archive.stat().st_size < LIMIT
    decompressed: list[int] = []
    read = gzip.GzipFile.read

    def counted(self: gzip.GzipFile, size: int = -1) -> bytes:
        data = read(self, size)
        decompressed.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counted)
    _refused(archive, tmp_path / "out" / "bundle", f"decompresses to more than {LIMIT} bytes (in the data after "
             "member 'weights.bin')")
    assert sum(decompressed) == LIMIT + 1  # stopped at the limit, not at the end of the bomb


@pytest.mark.parametrize("keep", ["header", "half", "no-trailer"])
def test_unpack_refuses_truncated_archives(keep: str, bundle: Path, tmp_path: Path) -> None:
    whole = pack(bundle, tmp_path / "whole.tar.gz").read_bytes()
    cut = {"header": 10, "half": len(whole) // 2, "no-trailer": len(whole) - 4}[keep]
    archive = tmp_path / "in" / "cut.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(whole[:cut])
    _refused(archive, tmp_path / "out" / "bundle", "is truncated or not a valid .tar.gz", max_bytes=10 * LIMIT)


@pytest.mark.parametrize("content, problem", [(_random(4_000, 5), "is not gzip-compressed"),
                                              (gzip.compress(_random(4_000, 6)), "not a valid .tar.gz"),
                                              (b"", "is not gzip-compressed")])
def test_unpack_refuses_files_that_are_not_tar_gz(content: bytes, problem: str, tmp_path: Path) -> None:
    archive = tmp_path / "in" / "model.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(content)
    _refused(archive, tmp_path / "out" / "bundle", problem)


def test_open_bundle_takes_folders_as_they_are_and_unpacks_archives(bundle: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert open_bundle(bundle, scratch, LIMIT) == bundle
    archive = pack(bundle, tmp_path / "demo.tar.gz")
    opened = open_bundle(archive, scratch, 10 * LIMIT)
    assert opened == scratch / "demo" and _tree(opened) == _tree(bundle)

    bad = _archive(tmp_path / "evil.tgz", _member("../x", data=DATA))
    with pytest.raises(ArtifactError, match="climbs out"):
        open_bundle(bad, scratch, LIMIT)
    assert [p.name for p in scratch.iterdir()] == ["demo"]
