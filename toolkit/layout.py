"""Names of what qwdeploy writes and keeps: the files of an ONNX artifact folder, and the cache root.

Every module reads these names from here, so a folder is recognised the same way everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_FILE = "model.onnx"
DATA_FILE = MODEL_FILE + ".data"  # the external weights beside the graph
GENAI_CONFIG = "genai_config.json"  # onnxruntime-genai's runtime config
GENERATION_CONFIG = "generation_config.json"  # copied from the checkpoint
BACKEND_MANIFEST = "qwdeploy_backend.json"  # what a device backend did (passes, options, library)
CHECKSUMS_FILE = "checksums.sha256"  # sha256sum format, every other file of the folder

CACHE_ENV = "QWDEPLOY_CACHE"


def cache_root() -> Path:
    """$QWDEPLOY_CACHE, else $XDG_CACHE_HOME/qwdeploy, else ~/.cache/qwdeploy: built kernels, fetched
    headers, the converted tokenizer and the measured memory bandwidth all live below it."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qwdeploy"
