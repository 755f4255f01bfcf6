"""ModelSpec: what a Hugging Face Qwen config means, in the terms every exporter needs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UnsupportedModelError


@dataclass(frozen=True)
class Family:
    """What distinguishes one supported architecture from the others."""

    architecture: str
    model_type: str
    qkv_bias: bool  # the default, or the fixed value when bias_key is None
    bias_key: str | None  # the config key transformers reads for q/k/v biases
    qk_norm: bool
    moe: bool
    shared_expert: bool


FAMILIES: dict[str, Family] = {
    f.architecture: f
    for f in (
        Family("Qwen2ForCausalLM", "qwen2", qkv_bias=True, bias_key=None, qk_norm=False, moe=False, shared_expert=False),
        Family("Qwen3ForCausalLM", "qwen3", qkv_bias=False, bias_key="attention_bias", qk_norm=True, moe=False, shared_expert=False),
        Family("Qwen2MoeForCausalLM", "qwen2_moe", qkv_bias=True, bias_key="qkv_bias", qk_norm=False, moe=True, shared_expert=True),
        Family("Qwen3MoeForCausalLM", "qwen3_moe", qkv_bias=False, bias_key="attention_bias", qk_norm=True, moe=True, shared_expert=False),
    )
}

SUPPORTED_ARCHITECTURES = tuple(FAMILIES)

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"


@dataclass(frozen=True)
class RopeScaling:
    type: str  # "linear", "dynamic", "yarn", "longrope", "llama3", ...
    factor: float
    original_max_position_embeddings: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the rest, e.g. yarn's beta_fast


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    top_k: int
    norm_topk_prob: bool
    moe_intermediate_size: int
    decoder_sparse_step: int
    mlp_only_layers: tuple[int, ...]
    shared_expert_intermediate_size: int  # 0 when the family has no shared expert


@dataclass(frozen=True)
class ModelSpec:
    """Every hyper-parameter of a supported Qwen decoder, validated."""

    architecture: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: RopeScaling | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    qk_norm: bool
    sliding_window: int | None
    layer_types: tuple[str, ...]
    moe: MoESpec | None
    torch_dtype: str
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()

    @property
    def family(self) -> Family:
        return FAMILIES[self.architecture]

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def is_moe_layer(self, layer: int) -> bool:
        """Transformers' rule: sparse unless listed in mlp_only_layers or off the sparse step."""
        if self.moe is None or self.moe.num_experts == 0:
            return False
        if layer in self.moe.mlp_only_layers:
            return False
        return (layer + 1) % self.moe.decoder_sparse_step == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require(config: dict, key: str, kind: type | tuple[type, ...], source: Path | None) -> Any:
    if key not in config or config[key] is None:
        raise CheckpointError(f"config is missing '{key}'", source)
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CheckpointError(f"config '{key}' must be {_kind_name(kind)}, got {value!r}", source)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _positive(config: dict, key: str, source: Path | None, default: int | None = None) -> int:
    if default is not None and config.get(key) is None:
        return default
    value = _require(config, key, int, source)
    if value <= 0:
        raise CheckpointError(f"config '{key}' must be positive, got {value}", source)
    return value


def _rope(config: dict, source: Path | None) -> tuple[float, RopeScaling | None]:
    # transformers 5 moves rope_theta and rope_scaling into rope_parameters.
    params = dict(config.get("rope_parameters") or {})
    scaling = config.get("rope_scaling") or {}
    if not isinstance(scaling, dict):
        raise CheckpointError(f"config 'rope_scaling' must be an object, got {scaling!r}", source)
    params.update(scaling)
    theta = float(config.get("rope_theta") or params.pop("rope_theta", None) or 10000.0)
    params.pop("rope_theta", None)
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    if rope_type == "default":
        return theta, None
    if "factor" not in params:
        raise CheckpointError(f"rope_scaling of type '{rope_type}' has no 'factor'", source)
    factor = float(params.pop("factor"))
    original = params.pop("original_max_position_embeddings", None)
    return theta, RopeScaling(rope_type, factor, original, params)


def _layer_types(config: dict, num_layers: int, source: Path | None) -> tuple[int | None, tuple[str, ...]]:
    window = config.get("sliding_window") if config.get("use_sliding_window") else None
    types = config.get("layer_types")
    if types is None:
        first_sliding = config.get("max_window_layers", num_layers)
        types = [
            SLIDING_ATTENTION if window is not None and i >= first_sliding else FULL_ATTENTION
            for i in range(num_layers)
        ]
    if len(types) != num_layers or any(t not in (FULL_ATTENTION, SLIDING_ATTENTION) for t in types):
        raise CheckpointError(f"config 'layer_types' must list {num_layers} attention types", source)
    if SLIDING_ATTENTION in types and window is None:
        window = config.get("sliding_window")
        if not isinstance(window, int) or window <= 0:
            raise CheckpointError("config has sliding layers but no positive 'sliding_window'", source)
    return (window if SLIDING_ATTENTION in types else None), tuple(types)


def _moe(config: dict, family: Family, source: Path | None) -> MoESpec:
    step = _positive(config, "decoder_sparse_step", source, default=1)
    mlp_only = config.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list) or not all(isinstance(i, int) for i in mlp_only):
        raise CheckpointError(f"config 'mlp_only_layers' must be a list of layer indices, got {mlp_only!r}", source)
    experts = _positive(config, "num_experts", source)
    top_k = _positive(config, "num_experts_per_tok", source)
    if top_k > experts:
        raise CheckpointError(f"config 'num_experts_per_tok' ({top_k}) exceeds 'num_experts' ({experts})", source)
    return MoESpec(
        num_experts=experts,
        top_k=top_k,
        norm_topk_prob=bool(config.get("norm_topk_prob", False)),
        moe_intermediate_size=_positive(config, "moe_intermediate_size", source),
        decoder_sparse_step=step,
        mlp_only_layers=tuple(sorted(mlp_only)),
        shared_expert_intermediate_size=(
            _positive(config, "shared_expert_intermediate_size", source) if family.shared_expert else 0
        ),
    )


def _token_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (int(value),)


def spec_from_config(config: dict, source: Path | None = None) -> ModelSpec:
    """Validate a parsed config.json; raise a one-line error for anything unsupported or wrong."""
    archs = config.get("architectures") or []
    if not isinstance(archs, list) or len(archs) != 1:
        raise UnsupportedModelError(
            f"config must name exactly one architecture in 'architectures' (got {archs!r}); "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
            source,
        )
    family = FAMILIES.get(archs[0])
    if family is None:
        raise UnsupportedModelError(
            f"architecture '{archs[0]}' is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
            source,
        )
    hidden = _positive(config, "hidden_size", source)
    heads = _positive(config, "num_attention_heads", source)
    kv_heads = _positive(config, "num_key_value_heads", source, default=heads)
    if heads % kv_heads:
        raise CheckpointError(
            f"config 'num_attention_heads' ({heads}) is not a multiple of 'num_key_value_heads' ({kv_heads})", source
        )
    head_dim = _positive(config, "head_dim", source, default=hidden // heads)
    layers = _positive(config, "num_hidden_layers", source)
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(f"hidden_act '{act}' is not supported (Qwen uses 'silu')", source)
    theta, scaling = _rope(config, source)
    window, layer_types = _layer_types(config, layers, source)
    bias = config.get(family.bias_key, family.qkv_bias) if family.bias_key else family.qkv_bias
    eps = _require(config, "rms_norm_eps", (int, float), source)
    return ModelSpec(
        architecture=family.architecture,
        model_type=family.model_type,
        hidden_size=hidden,
        intermediate_size=_positive(config, "intermediate_size", source),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=_positive(config, "vocab_size", source),
        rms_norm_eps=float(eps),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=_positive(config, "max_position_embeddings", source),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=bool(bias),
        qk_norm=family.qk_norm,
        sliding_window=window,
        layer_types=layer_types,
        moe=_moe(config, family, source) if family.moe else None,
        torch_dtype=str(config.get("torch_dtype") or config.get("dtype") or "float32"),
        hidden_act=act,
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=_token_ids(config.get("eos_token_id")),
    )


def load_config(path: Path) -> dict:
    """Read config.json with errors that name the file."""
    if not path.is_file():
        raise CheckpointError("config.json not found (is this a Hugging Face model directory?)", path.parent)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"not valid JSON ({exc})", path) from None
    if not isinstance(config, dict):
        raise CheckpointError("must hold a JSON object", path)
    return config
