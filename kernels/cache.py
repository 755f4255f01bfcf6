"""qwdeploy's cache folder for built kernels and fetched headers."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "QWDEPLOY_CACHE_DIR"


def cache_root() -> Path:
    """$QWDEPLOY_CACHE_DIR, else $XDG_CACHE_HOME/qwdeploy, else ~/.cache/qwdeploy."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qwdeploy"
