"""The wheel installs one `qwdeploy` namespace with profile data, and pyproject lists every package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("toolkit", "exporters", "backends", "kernels", "profiles")


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        "qwdeploy." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in TOP_LEVEL
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed


def test_wheel_has_only_the_qwdeploy_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, ROOT],
        check=True,
    )
    (wheel,) = tmp_path.glob("qwdeploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("qwdeploy/", "qwdeploy-")) for n in names), names
    assert "qwdeploy/profiles/rpi5.toml" in names
    assert "qwdeploy/toolkit/cli/main.py" in names
    assert not any(n.startswith("qwdeploy/__init__") for n in names)
