"""The suite's own configuration: a test that crashes the interpreter (as a faulting native kernel would)
fails alone; the tests after it still run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_a_segfaulting_test_fails_alone(tmp_path):
    (tmp_path / "test_crash.py").write_text("import ctypes\n\n\ndef test_segfaults():\n    ctypes.string_at(0)\n\n\n"
                                            "def test_after_the_crash():\n    assert sum(range(5)) == 10\n")
    (tmp_path / "test_other.py").write_text("def test_elsewhere():\n    assert max(3, 8) == 8\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-c", str(PYPROJECT), "--rootdir", str(tmp_path),
                             "-p", "no:cacheprovider", "test_crash.py", "test_other.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed, 2 passed" in summary, result.stdout[-2000:]
    assert "crashed while running 'test_crash.py::test_segfaults'" in result.stdout
