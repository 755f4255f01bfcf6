"""A local Hugging Face checkpoint: config, spec, weights (one tensor at a time), tokenizer files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, MissingDependencyError
from .files import MAX_JSON_BYTES, brief, read_json_object, read_regular
from .safetensors_io import DTYPE_NAMES, DTYPES, SafetensorsFile, StoredSpan
from .spec import ModelSpec, load_config, spec_from_config
from .tensors import IGNORABLE, TIED_OUTPUT, ExpectedTensor, expected_tensors

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "chat_template.jinja")

CAST_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": DTYPES["BF16"]}


@dataclass(frozen=True)
class StoredTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path


class WeightSource:
    """Names, headers and memory-mapped data of a checkpoint's tensors."""

    def __init__(self, directory: Path, trust_pickle: bool = False):
        self.directory = directory
        self._files: dict[Path, SafetensorsFile] = {}
        self._where: dict[str, Path] = {}
        self._pickle: dict[str, np.ndarray] | None = None
        self._locate(trust_pickle)

    def _locate(self, trust_pickle: bool) -> None:
        index = self.directory / INDEX_FILE
        single = self.directory / SINGLE_FILE
        # lexists, not is_file: a FIFO or unreadable file by these names must be refused, not skipped.
        if os.path.lexists(index):
            self._from_index(index)
        elif os.path.lexists(single):
            self._add_file(single)
        else:
            shards = sorted(self.directory.glob("*.safetensors"))
            if shards:
                for shard in shards:
                    self._add_file(shard)
                return
            pickles = sorted(p for pattern in PICKLE_PATTERNS for p in self.directory.glob(pattern))
            if not pickles:
                raise CheckpointError("no weights found (expected model.safetensors or an index)", self.directory)
            if not trust_pickle:
                raise CheckpointError(
                    f"refusing pickle weights ({pickles[0].name}): pickle files can run code when loaded; "
                    "convert to safetensors or pass --trust-pickle if you trust their source",
                    self.directory,
                )
            self._load_pickles(pickles)

    def _from_index(self, index: Path) -> None:
        weight_map = read_json_object(index, "safetensors index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError("not a valid safetensors index (needs a 'weight_map' object)", index)
        for name, shard_name in weight_map.items():
            _check_shard_name(name, shard_name, index)
        for shard_name in sorted(set(weight_map.values())):
            shard = self.directory / shard_name
            if not os.path.lexists(shard):
                raise CheckpointError(f"shard {brief(shard_name)} named by the index is missing", index)
            self._add_file(shard)
        for name, shard_name in weight_map.items():
            if self._where.get(name) != self.directory / shard_name:
                raise CheckpointError(f"index maps {brief(name)} to {brief(shard_name)}, which does not hold it", index)

    def _add_file(self, path: Path) -> None:
        st = SafetensorsFile(path)
        self._files[path] = st
        for name in st.headers:
            if name in self._where:
                raise CheckpointError(f"tensor {brief(name)} appears in two files ({self._where[name].name})", path)
            self._where[name] = path

    def _load_pickles(self, paths: list[Path]) -> None:
        try:
            import torch
        except ImportError:
            raise MissingDependencyError("reading pickle weights needs torch: pip install torch") from None
        self._pickle = {}
        for path in paths:
            try:
                state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            except Exception as exc:  # torch raises many types for a bad file
                raise CheckpointError(f"cannot load pickle weights ({type(exc).__name__})", path) from None
            if not isinstance(state, dict):
                raise CheckpointError(f"pickle weights hold a {type(state).__name__}, not a dict of tensors", path)
            for name, value in state.items():
                self._pickle[name] = _pickled_array(torch, name, value, path)
                self._where[name] = path

    def names(self) -> list[str]:
        return list(self._where)

    def info(self, name: str) -> StoredTensor:
        path = self._where[name]
        if self._pickle is not None:
            array = self._pickle[name]
            dtype = next(k for k, v in DTYPES.items() if v == array.dtype)
            return StoredTensor(name, dtype, tuple(array.shape), path)
        h = self._files[path].headers[name]
        return StoredTensor(name, h.dtype, h.shape, path)

    def _file(self, name: str) -> SafetensorsFile | None:
        """The file holding `name`; None for pickle weights (held in memory)."""
        if name not in self._where:
            raise CheckpointError(f"tensor '{name}' not found", self.directory)
        return None if self._pickle is not None else self._files[self._where[name]]

    def raw(self, name: str) -> np.ndarray:
        file = self._file(name)
        return self._pickle[name] if file is None else file.tensor(name)

    def span(self, name: str) -> StoredSpan | None:
        """Where the tensor's bytes lie in its safetensors file; None for pickle weights."""
        file = self._file(name)
        return None if file is None else file.span(name)

    def release(self, name: str, begin: int = 0, end: int | None = None) -> None:
        if self._pickle is None:
            self._files[self._where[name]].release(name, begin, end)

    def files(self) -> list[Path]:
        return sorted(set(self._where.values()))


class Checkpoint:
    """A Hugging Face model directory opened for export; nothing large is read until asked."""

    def __init__(self, directory: Path, trust_pickle: bool = False):
        self.directory = Path(directory)
        _check_folder(self.directory)
        self.config_path = self.directory / "config.json"
        self.config = load_config(self.config_path)
        self.spec: ModelSpec = spec_from_config(self.config, self.config_path)
        self.weights = WeightSource(self.directory, trust_pickle)
        self.generation_config = self._optional_json("generation_config.json")
        self.tokenizer_config = self._optional_json("tokenizer_config.json")

    def _optional_json(self, name: str) -> dict:
        path = self.directory / name
        return read_json_object(path) if os.path.lexists(path) else {}

    @property
    def chat_template(self) -> str | None:
        standalone = self.directory / "chat_template.jinja"
        if os.path.lexists(standalone):
            try:
                return read_regular(standalone, MAX_JSON_BYTES).decode("utf-8")
            except UnicodeDecodeError:
                raise CheckpointError("not UTF-8 text", standalone) from None
        template = self.tokenizer_config.get("chat_template")
        return template if isinstance(template, str) else None

    def tokenizer_files(self) -> list[Path]:
        return [self.directory / n for n in TOKENIZER_FILES if (self.directory / n).is_file()]

    def expected(self) -> list[ExpectedTensor]:
        return list(expected_tensors(self.spec))

    def validate(self) -> list[ExpectedTensor]:
        """Check every expected tensor is present with the right shape and nothing unexplained is."""
        expected = self.expected()
        stored = set(self.weights.names())
        for tensor in expected:
            if tensor.name not in stored:
                raise CheckpointError(f"tensor '{tensor.name}' is missing (config implies {list(tensor.shape)})",
                                      self.directory)
            info = self.weights.info(tensor.name)
            if info.shape != tensor.shape:
                raise CheckpointError(
                    f"tensor '{tensor.name}' has shape {list(info.shape)} but the config implies {list(tensor.shape)}",
                    info.file,
                )
            if info.dtype not in ("F32", "F16", "BF16"):
                raise CheckpointError(f"tensor '{tensor.name}' has non-float dtype {info.dtype}", info.file)
        known = {t.name for t in expected}
        if self.spec.tie_word_embeddings:
            known.add(TIED_OUTPUT)
        extra = sorted(n for n in stored - known if not any(p.fullmatch(n) for p in IGNORABLE))
        if extra:
            more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
            raise CheckpointError(
                f"tensor {brief(extra[0])}{more} is not described by config.json "
                f"({self.spec.architecture}, {self.spec.num_layers} layers)",
                self.directory,
            )
        return expected

    def read(self, name: str, dtype: str | None = None) -> np.ndarray:
        """One tensor, memory-mapped; cast (copied) only when `dtype` differs from the stored one."""
        array = self.weights.raw(name)
        if dtype is None:
            return array
        target = np.dtype(CAST_DTYPES[dtype])
        return array if array.dtype == target else array.astype(target)

    def release(self, name: str, begin: int = 0, end: int | None = None) -> None:
        """Tell the reader bytes [begin, end) of a tensor will not be needed again (exporters call this)."""
        self.weights.release(name, begin, end)

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.weights.files())


def _check_shard_name(name: str, shard_name: object, index: Path) -> None:
    # Judged by name, before touching the disk: a downloaded index must not make us read any file the
    # user can (a symlink inside the folder is the user's own doing and is followed).
    if not isinstance(shard_name, str) or not shard_name or "\0" in shard_name:
        raise CheckpointError(f"index maps {brief(name)} to {brief(shard_name)}, which is not a file name", index)
    if Path(shard_name).is_absolute() or ".." in Path(shard_name).parts:
        raise CheckpointError(f"index maps {brief(name)} to {brief(shard_name)}, which leaves the checkpoint folder "
                              "(absolute or '..' shard paths are refused)", index)


def _pickled_array(torch: Any, name: object, value: object, path: Path) -> np.ndarray:
    """One trusted-pickle entry as an array of a dtype the rest of qwdeploy reads, or one line."""
    if not isinstance(name, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        raise CheckpointError(f"pickle weights map {brief(name)} to a {type(value).__name__}, not a dense tensor", path)
    try:
        array = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    except (TypeError, RuntimeError):  # dtypes numpy has no match for (float8, quantized, complex32)
        array = None
    if array is None or array.dtype not in DTYPE_NAMES:
        raise CheckpointError(f"pickle tensor {brief(name)} has unsupported dtype {value.dtype}", path)
    return array


def _check_folder(directory: Path) -> None:
    try:
        if not directory.is_dir():
            raise CheckpointError("not a directory", directory)
        os.listdir(directory)  # the glob fallbacks need to list it,
        os.stat(os.path.join(directory, "."))  # and opening its files needs search permission
    except OSError as exc:
        raise CheckpointError(f"cannot read folder ({exc.strerror or exc})", directory) from None


def open_checkpoint(model: str | Path, trust_pickle: bool = False) -> Checkpoint:
    """Open a local directory, or a hub id when huggingface_hub and a network are available."""
    path = Path(model).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a parent folder without search permission
        raise CheckpointError(f"cannot read ({exc.strerror or exc})", path) from None
    if exists:
        return Checkpoint(path, trust_pickle)
    if _looks_like_hub_id(str(model)):
        return Checkpoint(_download(str(model)), trust_pickle)
    raise CheckpointError("no such directory", path)


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~"))


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            "no such directory (to fetch it from the hub, pip install 'qwdeploy[hub]')", Path(repo_id)
        ) from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.jinja", "merges.txt"]))
    except Exception as exc:  # network and hub errors come in many types
        raise CheckpointError(f"no such directory, and the hub download failed ({type(exc).__name__})",
                              Path(repo_id)) from None
