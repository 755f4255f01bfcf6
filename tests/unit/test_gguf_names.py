"""Our GGUF names are llama.cpp's: every tensor a Qwen export plans is one gguf-py lists for its architecture."""

from __future__ import annotations

import gguf
import pytest
from gguf import GGMLQuantizationType as T

from qwdeploy.exporters.gguf.names import ARCHITECTURES, MODEL_ARCHS
from qwdeploy.exporters.gguf.plan import plan_tensors
from qwdeploy.toolkit.demo import ARCHS, demo_config
from qwdeploy.toolkit.spec import FAMILIES, spec_from_config
from qwdeploy.toolkit.tensors import expected_tensors

SUFFIXES = ("weight", "bias")


def _variants(arch: str) -> list:
    """The tiny config, with its head tied the other way and, where the config decides, q/k/v biases flipped."""
    config = demo_config(arch, "tiny")
    family = FAMILIES[config["architectures"][0]]
    variants = [pytest.param(config, id=arch),
                pytest.param({**config, "tie_word_embeddings": not config["tie_word_embeddings"]}, id=f"{arch}-tie")]
    if family.bias_key:
        variants.append(pytest.param({**config, family.bias_key: not family.qkv_bias}, id=f"{arch}-bias"))
    return variants


def _llama_names(arch: gguf.MODEL_ARCH, layers: int) -> set[str]:
    """Every tensor name (without suffix) llama.cpp's architecture may hold, per gguf-py's tables."""
    return {gguf.TENSOR_NAMES[t].format(bid=layer) for t in gguf.MODEL_TENSORS[arch] for layer in range(layers)}


@pytest.mark.parametrize("config", [v for arch in ARCHS for v in _variants(arch)])
def test_every_planned_tensor_is_listed_for_its_architecture(config):
    spec = spec_from_config(config)
    allowed = _llama_names(MODEL_ARCHS[spec.model_type], spec.num_layers)
    for tensor in plan_tensors(list(expected_tensors(spec)), T.F16):
        base, _, suffix = tensor.name.rpartition(".")
        assert suffix in SUFFIXES and base in allowed, \
            f"{tensor.name} ({tensor.role}) is not a tensor of llama.cpp's {ARCHITECTURES[spec.model_type]}"


def test_every_family_has_a_llama_cpp_architecture():
    assert set(ARCHITECTURES) == {family.model_type for family in FAMILIES.values()}
    assert set(ARCHITECTURES.values()) <= set(gguf.MODEL_ARCH_NAMES.values())
