"""Which kind of artifact a path is: an ONNX folder, a GGUF file or a Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path

from ..errors import QwdeployError

ENGINES = {"onnx": "ONNX Runtime", "gguf": "llama.cpp", "hf": "transformers"}  # what runs each kind
GGUF_MAGIC = b"GGUF"


def artifact_kind(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise QwdeployError("no such file or directory", path)
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(4) == GGUF_MAGIC:
                return "gguf"
    elif (path / "model.onnx").is_file():
        return "onnx"
    elif (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return "hf"
    raise QwdeployError("not an artifact qwdeploy can profile: expected an ONNX folder (model.onnx), "
                        "a GGUF file, or a Hugging Face checkpoint folder (config.json + *.safetensors)", path)
