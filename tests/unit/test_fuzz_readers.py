"""Property-based fuzzing of every reader of untrusted bytes: safetensors headers, index.json,
config.json, GGUF and profile TOML. Any input either loads or raises QwdeployError (one line naming
the file), within a deadline and without allocating more than a small multiple of its own size.

Inputs are built, not only random: valid files with one field swapped for a wrong type or boundary
value, then sometimes flipped bytes or a truncation, so the generator reaches the deep checks.
The default run is short; `pytest -m fuzz` runs the long variants.
"""

from __future__ import annotations

import json
import math
import struct
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwdeploy.exporters.gguf.reader import GGUFFile
from qwdeploy.toolkit.checkpoint import WeightSource
from qwdeploy.toolkit.demo import ARCHS, demo_config
from qwdeploy.toolkit.errors import QwdeployError
from qwdeploy.toolkit.profiles import load_profile
from qwdeploy.toolkit.safetensors_io import DTYPES, SafetensorsFile, TensorPlan, write_safetensors
from qwdeploy.toolkit.spec import load_config, spec_from_config
from qwdeploy.toolkit.tensors import parameter_count

# The default suite's budget runs the same examples every time (a red CI run is repeatable); the long
# one draws new examples on every run.
QUICK = settings(max_examples=150, deadline=5000, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=5000, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])
# Each reader runs a short budget in the default suite and a long one behind the fuzz marker (-m fuzz).
BUDGETS = [pytest.param(QUICK, id="quick"), pytest.param(LONG, id="long", marks=pytest.mark.fuzz)]


def fuzz(budget: settings, strategy: st.SearchStrategy, check: Callable[[Any], None]) -> None:
    budget(given(strategy)(check))()
MEMORY_SLACK = 16 * 1024 * 1024  # a reader may use this much beyond 64 bytes per input byte

BOUNDARY_INTS = [0, 1, -1, 7, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 10**30]
scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(BOUNDARY_INTS), st.integers(-1000, 1000),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


@st.composite
def damaged(draw: st.DrawFn, raw: bytes) -> bytes:
    """`raw` as is, with a few bytes changed, or cut short."""
    kind = draw(st.sampled_from(["as is", "as is", "flip", "cut"]))
    if kind == "cut" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4)) if kind == "flip" and raw else 0):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def loads_or_refuses(call: Callable[[], Any], path: Path, input_bytes: int) -> Any:
    """The property: `call()` returns, or raises a one-line QwdeployError naming `path`; memory bounded."""
    tracemalloc.start()
    try:
        return call()
    except QwdeployError as exc:
        message = str(exc)
        assert str(path) in message and "\n" not in message, message
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= MEMORY_SLACK + 64 * input_bytes, f"peak {peak} bytes for a {input_bytes}-byte input"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- safetensors headers ---------------------------------------------------------------------------

@st.composite
def safetensors_bytes(draw: st.DrawFn) -> bytes:
    header: dict[str, Any] = {}
    offset = 0
    for i in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(sorted(DTYPES)))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        size = math.prod(shape) * DTYPES[dtype].itemsize
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        field = draw(st.sampled_from([None, None, "dtype", "shape", "data_offsets", "entry", "dim", "end"]))
        if field == "dim":  # one dimension, or the end offset, swapped for a wrong type or boundary value
            entry["shape"] = [*shape[:-1], draw(scalars)]
        elif field == "end":
            entry["data_offsets"] = [offset, draw(scalars)]
        elif field == "entry":
            entry = draw(junk)
        elif field:
            entry[field] = draw(junk)
        header[draw(st.text(max_size=4)) + str(i)] = entry
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4)) | junk)
    raw = json.dumps(header).encode()
    data_len = max(0, offset + draw(st.integers(-2, 2)))
    data = np.random.default_rng(offset).integers(1, 256, data_len, dtype=np.uint8).tobytes()
    return draw(damaged(struct.pack("<Q", len(raw)) + raw + data))


def check_safetensors(workdir: Path, raw: bytes) -> None:
    path = workdir / "fuzz.safetensors"
    path.write_bytes(raw)
    st_file = loads_or_refuses(lambda: SafetensorsFile(path), path, len(raw))
    if st_file is not None:  # whatever loads must map
        for name, h in st_file.headers.items():
            assert st_file.tensor(name).shape == h.shape
        st_file.close()


@pytest.mark.parametrize("budget", BUDGETS)
def test_safetensors_headers(workdir, budget):
    fuzz(budget, safetensors_bytes(), lambda raw: check_safetensors(workdir, raw))


# --- index.json ---------------------------------------------------------------------------------

SHARD_NAMES = ["a.safetensors", "b.safetensors", "./a.safetensors", "../a.safetensors", "/etc/hostname", "",
               "a\0.safetensors", "sub/../a.safetensors", "missing.safetensors", "a.safetensors/", "." * 300]


@pytest.fixture(scope="module")
def shard_dir(workdir: Path) -> Path:
    folder = workdir / "index"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name, tensor in (("a", "x"), ("b", "y")):
        array = rng.standard_normal((2, 3)).astype(np.float32)
        write_safetensors(folder / f"{name}.safetensors", [TensorPlan(tensor, array.dtype, array.shape)], [array])
    return folder


@st.composite
def index_bytes(draw: st.DrawFn) -> bytes:
    weight_map = {"x": "a.safetensors", "y": "b.safetensors"}
    for _ in range(draw(st.integers(0, 3))):
        weight_map[draw(st.sampled_from(["x", "y", "z"]) | st.text(max_size=3))] = draw(
            st.sampled_from(SHARD_NAMES) | junk)
    doc = draw(st.sampled_from([{"weight_map": weight_map}, {"metadata": {}, "weight_map": weight_map}])
               | st.fixed_dictionaries({"weight_map": junk}) | junk)
    return draw(damaged(json.dumps(doc).encode()))


def check_index(folder: Path, raw: bytes) -> None:
    index = folder / "model.safetensors.index.json"
    index.write_bytes(raw)
    source = loads_or_refuses(lambda: WeightSource(folder), folder, len(raw))
    if source is not None:  # whatever loads stays inside the folder
        assert all(folder.resolve() in f.resolve().parents for f in source.files())


@pytest.mark.parametrize("budget", BUDGETS)
def test_index_json(shard_dir, budget):
    fuzz(budget, index_bytes(), lambda raw: check_index(shard_dir, raw))


# --- config.json → ModelSpec ----------------------------------------------------------------------

CONFIG_KEYS = sorted({k for arch in ARCHS for k in demo_config(arch, "tiny")} | {
    "head_dim", "rope_scaling", "rope_parameters", "layer_types", "mlp_only_layers", "attention_bias", "qkv_bias",
    "num_experts", "shared_expert_intermediate_size", "dtype"})
rope_scaling = st.fixed_dictionaries({"type": st.sampled_from(["yarn", "linear", "default"]) | junk},
                                     optional={"factor": junk | st.floats(0.5, 8), "beta_fast": junk,
                                               "original_max_position_embeddings": junk | st.integers(1, 10**6)})


@st.composite
def config_bytes(draw: st.DrawFn) -> bytes:
    config = dict(demo_config(draw(st.sampled_from(ARCHS)), "tiny"))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(CONFIG_KEYS))
        if draw(st.integers(0, 5)) == 0:
            config.pop(key, None)
        else:
            config[key] = draw(rope_scaling if key == "rope_scaling" else junk | st.integers(1, 5000))
    return draw(damaged(json.dumps(config).encode()))


def check_config(workdir: Path, raw: bytes) -> None:
    path = workdir / "config.json"
    path.write_bytes(raw)
    spec = loads_or_refuses(lambda: spec_from_config(load_config(path), path), path, len(raw))
    if spec is not None:  # whatever loads describes tensors we can list
        assert parameter_count(spec) > 0


@pytest.mark.parametrize("budget", BUDGETS)
def test_config_json(workdir, budget):
    fuzz(budget, config_bytes(), lambda raw: check_config(workdir, raw))


# --- GGUF ----------------------------------------------------------------------------------------

NUMERIC_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
QTYPES = [0, 1, 8, 30, 2, 12, 99]  # F32, F16, Q8_0, BF16, Q4_0, Q4_K, unknown


@st.composite
def gguf_value(draw: st.DrawFn) -> tuple[int, bytes]:
    vtype = draw(st.sampled_from([*NUMERIC_FORMATS, 8, 9, 13, 2**31]))
    if vtype in NUMERIC_FORMATS:
        return vtype, struct.pack("<" + NUMERIC_FORMATS[vtype], 1)
    if vtype == 8:
        text = draw(st.binary(max_size=8))
        return vtype, struct.pack("<Q", draw(st.sampled_from([len(text), 2**40]))) + text
    if vtype == 9:
        item = draw(st.sampled_from([4, 6, 8, 9, 77]))
        count = draw(st.sampled_from([0, 2, 2**60]))
        body = b"".join(struct.pack("<Q", 1) + b"t" for _ in range(2)) if item == 8 else bytes(range(1, 9))
        return vtype, struct.pack("<IQ", item, count) + body
    return vtype, draw(st.binary(max_size=8))


@st.composite
def gguf_bytes(draw: st.DrawFn, make_gguf: Callable[..., bytes]) -> bytes:
    kvs = [(draw(st.text(max_size=6)), *draw(gguf_value())) for _ in range(draw(st.integers(0, 3)))]
    if draw(st.booleans()):
        kvs.append(("general.alignment", 4, struct.pack("<I", draw(st.sampled_from([1, 3, 0, 32, 64])))))
    tensors, offset = [], 0
    for i in range(draw(st.integers(0, 3))):
        dims = tuple(draw(st.lists(st.sampled_from([1, 2, 32, 64, 0, 2**40]), min_size=0, max_size=5)))
        size = draw(st.integers(0, 300)) if offset < 2**20 else 0  # past a lying offset, claim without data
        data = np.random.default_rng(i).integers(1, 256, size, dtype=np.uint8).tobytes()
        tensors.append((f"t{i % 2}", dims, draw(st.sampled_from(QTYPES)), offset, data))
        offset += -(-len(data) // 32) * 32 + draw(st.sampled_from([0, 0, 4, 2**50]))
    counts = draw(st.sampled_from([{}, {}, {"n_kv": 2**62}, {"n_tensors": 2**40}, {"version": 1}]))
    return draw(damaged(make_gguf(kvs, tensors, **counts)))


def check_gguf(workdir: Path, raw: bytes) -> None:
    path = workdir / "fuzz.gguf"
    path.write_bytes(raw)
    gguf = loads_or_refuses(lambda: GGUFFile(path), path, len(raw))
    if gguf is not None:  # whatever loads must map
        for name, tensor in gguf.tensors.items():
            assert gguf.raw(name).size == tensor.nbytes


@pytest.mark.parametrize("budget", BUDGETS)
def test_gguf_bytes(workdir, make_gguf, budget):
    fuzz(budget, gguf_bytes(make_gguf), lambda raw: check_gguf(workdir, raw))


# --- device profile TOML -------------------------------------------------------------------------

PROFILE = {
    "description": "fuzzed board",
    "memory": {"total_gib": 8.0, "budget_gib": 6.0},
    "cpu": {"arch": "aarch64", "cores": 4, "isa": ["neon"]},
    "accelerator": {"kind": "none"},
    "deploy": {"format": "gguf", "backend": "cpu", "dtypes": ["q4_0"], "gguf_quant": "q4_0", "onnx_quant": "int4",
               "onnx_opset": 17, "usd_per_hour": 0.5},
}
toml_scalars = st.one_of(st.booleans(), st.sampled_from(BOUNDARY_INTS), st.integers(-100, 100), st.floats(-10, 100),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def toml_text(profile: dict) -> str:
    lines = [f"{toml_value(k)} = {toml_value(v)}" for k, v in profile.items() if not isinstance(v, dict)]
    for section, table in ((k, v) for k, v in profile.items() if isinstance(v, dict)):
        lines += [f"[{section}]", *(f"{toml_value(k)} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


@st.composite
def profile_bytes(draw: st.DrawFn) -> bytes:
    profile = json.loads(json.dumps(PROFILE))
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from([k for k, v in PROFILE.items() if isinstance(v, dict)]))
        key = draw(st.sampled_from(sorted(PROFILE[section]) * 3 + ["memory_gib", "name"]) | st.text(max_size=4))
        profile[section][key] = draw(toml_values)
    return draw(damaged(toml_text(profile).encode()))


def check_profile(workdir: Path, raw: bytes) -> None:
    path = workdir / "board.toml"
    path.write_bytes(raw)
    loads_or_refuses(lambda: load_profile(path), path, len(raw))


@pytest.mark.parametrize("budget", BUDGETS)
def test_profile_toml(workdir, budget):
    fuzz(budget, profile_bytes(), lambda raw: check_profile(workdir, raw))
