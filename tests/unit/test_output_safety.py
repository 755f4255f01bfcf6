"""Nothing the user owns is destroyed: overlapping, special and unwritable outputs are refused by name,
whatever --force says; signals and kills leave nothing behind (or nothing a later run does not remove)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwdeploy.toolkit.atomic import atomic_file, remove_stale
from qwdeploy.toolkit.cli.main import cli
from qwdeploy.toolkit.errors import OutputError

from untrusted import permission_bound

CLI_CHILD = Path(__file__).with_name("cli_child.py")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def checkpoint(make_checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(make_checkpoint("qwen2"), tmp_path / "ckpt"))


def _export(*args: object, cwd: Path | None = None):
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, ["export", *map(str, args)])
    finally:
        os.chdir(old)


def _refused(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize(("fmt", "out", "message"), [
    ("gguf", ".", "would replace the input"),
    ("onnx", ".", "would replace the input"),
    ("gguf", "..", "would replace the input"),
    ("gguf", "model.safetensors", "is inside the input"),
    ("onnx", "sub/dir", "is inside the input"),
])
def test_outputs_overlapping_the_checkpoint_are_refused_even_with_force(checkpoint, fmt, out, message):
    before = _digest(checkpoint)
    target = checkpoint / out
    _refused(_export(checkpoint, "--format", fmt, "-o", target, "--force", "--no-verify"), message)
    assert _digest(checkpoint) == before
    assert not (checkpoint / "sub").exists()


def test_an_output_that_is_a_weight_file_behind_a_link_is_refused(checkpoint, tmp_path):
    linked = tmp_path / "linked"
    linked.mkdir()
    for item in checkpoint.iterdir():  # the layout of a Hugging Face cache snapshot: links into a blob store
        (linked / item.name).symlink_to(item)
    before = _digest(checkpoint)
    result = _export(linked, "--format", "gguf", "-o", checkpoint / "model.safetensors", "--force", "--no-verify")
    _refused(result, "would replace the input")
    assert _digest(checkpoint) == before


def test_the_current_directory_is_never_replaced(checkpoint, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    result = _export(checkpoint, "--format", "onnx", "-o", ".", "--force", cwd=work)
    _refused(result, "is the current directory or contains it")
    assert (work / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "work"]  # no '..old-*' or partial folder


def test_a_dangling_link_is_not_replaced(checkpoint, tmp_path):
    link = tmp_path / "m.gguf"
    link.symlink_to(tmp_path / "elsewhere" / "m.gguf")
    _refused(_export(checkpoint, "--format", "gguf", "-o", link, "--no-verify"), "dangling")
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()


def test_a_character_device_is_not_replaced(checkpoint):
    _refused(_export(checkpoint, "--format", "gguf", "-o", "/dev/null", "--force", "--no-verify"),
             "is a character device")
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize(("out", "message"), [
    ("/proc/qwdeploy-test.gguf", "kernel filesystem"),
    ("/sys/kernel/qwdeploy-test.gguf", "kernel filesystem"),
    ("x" * 300 + ".gguf", "filesystems allow 255"),
])
def test_impossible_output_paths_are_one_line(checkpoint, tmp_path, out, message):
    _refused(_export(checkpoint, "--format", "gguf", "-o", tmp_path / out if out[0] == "x" else out, "--no-verify"),
             message)


def test_a_long_but_legal_name_works(checkpoint, tmp_path):
    out = tmp_path / ("y" * 240 + ".gguf")
    result = _export(checkpoint, "--format", "gguf", "-o", out, "--no-verify")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1_000_000


def _unprivileged_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*permission_bound(), sys.executable, str(CLI_CHILD), "plain", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("target", [None, "cpu"])
def test_an_unwritable_output_folder_is_one_line(checkpoint, tmp_path, target):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = _unprivileged_cli("export", checkpoint, "--format", "onnx", "-o", locked / "out",
                        *(["--target", target] if target else []))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "its folder is not writable (permission denied); nothing was left behind" in result.stderr
    assert list(locked.iterdir()) == []


def _start_slow_export(checkpoint: Path, out: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(CLI_CHILD), "slow", str(checkpoint), str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing", process.stderr.read()
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_terminating_signal_mid_write_leaves_nothing(checkpoint, tmp_path, signum):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = _start_slow_export(checkpoint, out_dir / "m.gguf")
    try:
        assert any(p.name.startswith(".m.gguf.partial-") for p in out_dir.iterdir())
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1].endswith("nothing was left behind"), stderr
    assert "Traceback" not in stderr
    assert list(out_dir.iterdir()) == []


def test_a_killed_run_is_cleaned_up_by_the_next(checkpoint, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    process = _start_slow_export(checkpoint, out_dir / "m.gguf")
    process.kill()
    process.wait(timeout=30)
    leftovers = list(out_dir.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".m.gguf.partial-")
    result = _export(checkpoint, "--format", "gguf", "--quant", "q8_0", "-o", out_dir / "m.gguf", "--no-verify")
    assert result.exit_code == 0, result.output
    assert "removed 1 leftover(s) of an interrupted earlier run" in result.stderr
    assert [p.name for p in out_dir.iterdir()] == ["m.gguf"]


def test_partials_of_a_live_run_are_left_alone(tmp_path):
    out = tmp_path / "m.gguf"
    live = tmp_path / f".m.gguf.partial-{os.getpid()}-abc"
    dead = tmp_path / ".m.gguf.partial-999999999-abc"  # above pid_max: no such process
    other = tmp_path / f".n.gguf.partial-{999999999}-abc"
    for path in (live, dead, other):
        path.write_bytes(b"GGUF partial")
    assert remove_stale(out) == [dead]
    assert live.exists() and other.exists() and not dead.exists()


def test_a_failed_write_removes_its_partial(tmp_path):
    out = tmp_path / "m.gguf"
    with pytest.raises(OutputError, match="no space left"):
        with atomic_file(out) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("mount_options", "fmt"), [("size=2m", "gguf"), ("size=2m", "onnx"), ("size=64m,nr_inodes=1", "gguf")])
def test_a_filesystem_that_fills_up_is_one_line_and_left_empty(checkpoint, tmp_path, mount_options, fmt):
    """A real tmpfs, mounted in a private mount namespace: too small for the file, or out of inodes."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o {mount_options} tmpfs {disk} && "
              f"{sys.executable} {CLI_CHILD} plain export {checkpoint} --format {fmt} -o {disk}/out --no-verify; "
              f"echo rc=$?; ls -A {disk}")
    result = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip() == "rc=1", (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [
        f"error: {disk}/out: no space left (disk or inodes full) while writing; nothing was left behind"]
