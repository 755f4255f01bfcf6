"""The folder an ONNX Runtime backend writes: fused graph + weights, tokenizer, genai config, manifest."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import onnx

from ..passes import PassReport
from .quant.config import LAYER

MODEL_FILE = "model.onnx"
GENAI_CONFIG = "genai_config.json"
MANIFEST = "qwdeploy_backend.json"
CUSTOM_OPS_KEY = "custom_ops_library"  # onnxruntime-genai's session option for a custom-op library


def nodes_per_layer(model: onnx.ModelProto) -> dict[int, int]:
    counts = Counter(int(m.group(1)) for n in model.graph.node if (m := LAYER.search(n.name + "/")))
    return dict(sorted(counts.items()))


def save_model(model: onnx.ModelProto, folder: Path) -> None:
    onnx.save_model(model, str(folder / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                     location=MODEL_FILE + ".data", size_threshold=1024)


def copy_side_files(portable: Path, folder: Path) -> None:
    """Tokenizer and generation files travel unchanged; the graph and genai config are rewritten."""
    for path in portable.iterdir():
        if path.is_file() and not path.name.startswith(MODEL_FILE) and path.name != GENAI_CONFIG:
            shutil.copy2(path, folder / path.name)


def write_genai_config(portable: Path, folder: Path, provider_options: list[dict], library: Path | None) -> None:
    config = json.loads((portable / GENAI_CONFIG).read_text(encoding="utf-8"))
    session = config["model"]["decoder"]["session_options"]
    session["provider_options"] = provider_options
    if library is not None:
        session[CUSTOM_OPS_KEY] = str(library)
    (folder / GENAI_CONFIG).write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")


def write_manifest(folder: Path, fields: dict[str, Any], reports: list[tuple[str, PassReport]]) -> None:
    manifest = {**fields, "passes": [{"phase": phase, "pass": r.name, "count": r.count} for phase, r in reports]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
