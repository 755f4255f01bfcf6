"""Which kind of artifact a path is, and whether it is whole, checked before any engine opens it."""

from __future__ import annotations

from pathlib import Path

from ..checksums import check_folder, check_gguf
from ..errors import ArtifactError
from ..layout import MODEL_FILE

ENGINES = {"onnx": "ONNX Runtime", "gguf": "llama.cpp", "hf": "transformers"}  # what runs each kind


def _onnx_whole(folder: Path) -> None:
    """model.onnx parses and every external tensor lies inside a data file of this folder."""
    import onnx

    model_path = folder / MODEL_FILE
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends for damaged bytes
        raise ArtifactError(f"not a readable ONNX model ({type(exc).__name__})", model_path) from None
    sizes: dict[str, int] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entry = {e.key: e.value for e in tensor.external_data}
        location = entry.get("location", "")
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise ArtifactError(f"tensor {tensor.name!r} points outside the folder ({location!r})", model_path)
        if location not in sizes:
            data = folder / location
            if not data.is_file():
                raise ArtifactError(f"{location} is missing (model.onnx keeps its weights there)", folder)
            sizes[location] = data.stat().st_size
        end = int(entry.get("offset", 0)) + int(entry.get("length", 0))
        if end > sizes[location]:
            raise ArtifactError(f"{location} is truncated: tensor {tensor.name!r} ends at byte {end}, "
                                f"the file has {sizes[location]}", folder)


def preflight(path: Path, kind: str) -> str:
    """Refuse an artifact that is damaged or not what qwdeploy wrote; say how it was checked."""
    path = Path(path)
    if kind == "gguf":
        from ...exporters.gguf.reader import GGUFFile

        GGUFFile(path)
        return "sha256 verified" if check_gguf(path) else "header checked (no qwdeploy checksum)"
    if kind == "onnx":
        verified = check_folder(path)
        _onnx_whole(path)
        return "sha256 verified" if verified else "graph and data files checked (no qwdeploy checksums)"
    from ..checkpoint import open_checkpoint

    open_checkpoint(path).validate()
    return "checkpoint validated"
