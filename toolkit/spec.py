"""ModelSpec: what a Hugging Face Qwen config means, in the terms every exporter needs."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UnsupportedModelError
from .files import brief, is_int, read_json_object


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

# Generous ceilings real Qwen models sit far within. An absurd config is refused here, before any
# tensor list or buffer is sized from it; GGUF stores lengths and token ids as uint32.
LIMITS: dict[str, int] = {
    "hidden_size": 65536, "intermediate_size": 2**18, "moe_intermediate_size": 2**18,
    "shared_expert_intermediate_size": 2**18, "num_hidden_layers": 1024, "num_attention_heads": 1024,
    "num_key_value_heads": 1024, "head_dim": 1024, "vocab_size": 2**22, "max_position_embeddings": 2**31 - 1,
    "original_max_position_embeddings": 2**31 - 1, "sliding_window": 2**31 - 1, "num_experts": 4096,
    "num_experts_per_tok": 4096, "decoder_sparse_step": 1024, "token_id": 2**31 - 1,
    "num_experts*num_hidden_layers": 2**17,  # the checkpoint holds (and we list) each expert of each layer
}
# Rope parameters the exporters read as numbers (transformers' names).
ROPE_NUMBERS = ("beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim")

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


def _require(config: dict, key: str, kinds: tuple[type, ...], source: Path | None) -> Any:
    if key not in config or config[key] is None:
        raise CheckpointError(f"config is missing '{key}'", source)
    value, names = config[key], " or ".join(k.__name__ for k in kinds)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise CheckpointError(f"config '{key}' must be {names}, got {brief(value)}", source)
    return value


def _positive(config: dict, key: str, source: Path | None, default: int | None = None) -> int:
    if default is not None and config.get(key) is None:
        return default
    value = _require(config, key, (int,), source)
    if value <= 0:
        raise CheckpointError(f"config '{key}' must be positive, got {value}", source)
    if value > LIMITS[key]:
        raise CheckpointError(f"config '{key}' is {value}, beyond the {LIMITS[key]} qwdeploy accepts", source)
    return value


def _number(value: Any, key: str, source: Path | None, positive: bool = True) -> float:
    # Chained comparisons reject NaN and keep ints too large for a float from reaching float().
    low = 0.0 if positive else -sys.float_info.max
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= sys.float_info.max:
        kind = "positive" if positive else "finite"
        raise CheckpointError(f"config '{key}' must be a {kind} number, got {brief(value)}", source)
    return float(value)


def _flag(config: dict, key: str, source: Path | None, default: bool = False) -> bool:
    if key not in config:
        return default
    if config[key] is not None and not isinstance(config[key], bool):
        raise CheckpointError(f"config '{key}' must be true or false, got {brief(config[key])}", source)
    return bool(config[key])  # null reads as false, as in transformers


def _rope(config: dict, source: Path | None) -> tuple[float, RopeScaling | None]:
    # transformers 5 moves rope_theta and rope_scaling into rope_parameters.
    params: dict[str, Any] = {}
    for key in ("rope_parameters", "rope_scaling"):
        if not isinstance(config.get(key) or {}, dict):
            raise CheckpointError(f"config '{key}' must be an object, got {brief(config[key])}", source)
        params.update(config.get(key) or {})
    theta = next((t for t in (config.get("rope_theta"), params.get("rope_theta")) if t is not None), 10000.0)
    theta = _number(theta, "rope_theta", source)
    params.pop("rope_theta", None)
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    if not isinstance(rope_type, str):
        raise CheckpointError(f"config 'rope_scaling' type must be a string, got {brief(rope_type)}", source)
    if rope_type == "default":
        return theta, None
    if "factor" not in params:
        raise CheckpointError(f"rope_scaling of type {brief(rope_type)} has no 'factor'", source)
    factor = _number(params.pop("factor"), "rope_scaling.factor", source)
    for key in ROPE_NUMBERS:
        if params.get(key) is not None:
            _number(params[key], f"rope_scaling.{key}", source, positive=False)
    original = _positive(params, "original_max_position_embeddings", source, default=0) or None
    params.pop("original_max_position_embeddings", None)
    return theta, RopeScaling(rope_type, factor, original, params)


def _layer_types(config: dict, num_layers: int, source: Path | None) -> tuple[int | None, tuple[str, ...]]:
    window = config.get("sliding_window")
    if window is not None and not (is_int(window) and 0 <= window <= LIMITS["sliding_window"]):
        raise CheckpointError(f"config 'sliding_window' must be an integer from 0 to {LIMITS['sliding_window']}, "
                              f"got {brief(window)}", source)
    types = config.get("layer_types")
    if types is None:
        first = num_layers if config.get("max_window_layers") is None else config["max_window_layers"]
        if not is_int(first) or first < 0:
            raise CheckpointError(f"config 'max_window_layers' must be a layer count, got {brief(first)}", source)
        sliding = _flag(config, "use_sliding_window", source) and window is not None
        types = [SLIDING_ATTENTION if sliding and i >= first else FULL_ATTENTION for i in range(num_layers)]
    if not isinstance(types, list) or len(types) != num_layers or any(
            t not in (FULL_ATTENTION, SLIDING_ATTENTION) for t in types):
        raise CheckpointError(f"config 'layer_types' must list {num_layers} attention types", source)
    if SLIDING_ATTENTION in types and not window:
        raise CheckpointError("config has sliding layers but no positive 'sliding_window'", source)
    return (window if SLIDING_ATTENTION in types else None), tuple(types)


def _moe(config: dict, family: Family, layers: int, source: Path | None) -> MoESpec:
    step = _positive(config, "decoder_sparse_step", source, default=1)
    mlp_only = config.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list) or not all(is_int(i) for i in mlp_only):
        raise CheckpointError(f"config 'mlp_only_layers' must list layer indices, got {brief(mlp_only)}", source)
    experts = _positive(config, "num_experts", source)
    top_k = _positive(config, "num_experts_per_tok", source)
    if top_k > experts:
        raise CheckpointError(f"config 'num_experts_per_tok' ({top_k}) exceeds 'num_experts' ({experts})", source)
    if experts * layers > (limit := LIMITS["num_experts*num_hidden_layers"]):
        raise CheckpointError(f"config has {experts} experts in each of {layers} layers, beyond the {limit} "
                              "expert-layers qwdeploy accepts", source)
    return MoESpec(
        num_experts=experts, top_k=top_k, norm_topk_prob=_flag(config, "norm_topk_prob", source),
        moe_intermediate_size=_positive(config, "moe_intermediate_size", source), decoder_sparse_step=step,
        mlp_only_layers=tuple(sorted(mlp_only)),
        shared_expert_intermediate_size=_positive(config, "shared_expert_intermediate_size", source)
        if family.shared_expert else 0,
    )


def _token_ids(config: dict, key: str, source: Path | None) -> tuple[int, ...]:
    value = config.get(key)
    ids = [] if value is None else value if isinstance(value, list) and key == "eos_token_id" else [value]
    if not all(is_int(i) and 0 <= i <= LIMITS["token_id"] for i in ids):
        raise CheckpointError(f"config '{key}' must be a token id (0 to {LIMITS['token_id']})"
                              f"{' or a list of them' if key == 'eos_token_id' else ''}, got {brief(value)}", source)
    return tuple(ids)


def _family(config: dict, source: Path | None) -> Family:
    archs, supported = config.get("architectures") or [], ", ".join(SUPPORTED_ARCHITECTURES)
    if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
        raise UnsupportedModelError(f"config must name exactly one architecture in 'architectures' "
                                    f"(got {brief(archs)}); supported: {supported}", source)
    if archs[0] not in FAMILIES:
        raise UnsupportedModelError(f"architecture {brief(archs[0])} is not supported; supported: {supported}", source)
    return FAMILIES[archs[0]]


def _attention(config: dict, source: Path | None) -> tuple[int, int, int, int]:
    """(hidden_size, heads, kv heads, head_dim), checked against each other."""
    hidden = _positive(config, "hidden_size", source)
    heads = _positive(config, "num_attention_heads", source)
    kv_heads = _positive(config, "num_key_value_heads", source, default=heads)
    if heads % kv_heads:
        raise CheckpointError(f"config 'num_attention_heads' ({heads}) is not a multiple of "
                              f"'num_key_value_heads' ({kv_heads})", source)
    if config.get("head_dim") is None and hidden % heads:
        raise CheckpointError(f"config 'hidden_size' ({hidden}) is not divisible by 'num_attention_heads' ({heads}) "
                              "and no 'head_dim' is given", source)
    return hidden, heads, kv_heads, _positive(config, "head_dim", source, default=hidden // heads)


def spec_from_config(config: dict, source: Path | None = None) -> ModelSpec:
    """Validate a parsed config.json; raise a one-line error for anything unsupported or wrong."""
    family = _family(config, source)
    hidden, heads, kv_heads, head_dim = _attention(config, source)
    layers = _positive(config, "num_hidden_layers", source)
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(f"hidden_act {brief(act)} is not supported (Qwen uses 'silu')", source)
    theta, scaling = _rope(config, source)
    window, layer_types = _layer_types(config, layers, source)
    bias = _flag(config, family.bias_key, source, family.qkv_bias) if family.bias_key else family.qkv_bias
    dtype = config.get("torch_dtype") or config.get("dtype") or "float32"
    if not isinstance(dtype, str):
        raise CheckpointError(f"config 'torch_dtype' must be a string, got {brief(dtype)}", source)
    return ModelSpec(
        architecture=family.architecture, model_type=family.model_type, hidden_size=hidden,
        intermediate_size=_positive(config, "intermediate_size", source), num_layers=layers, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, vocab_size=_positive(config, "vocab_size", source),
        rms_norm_eps=_number(_require(config, "rms_norm_eps", (int, float), source), "rms_norm_eps", source),
        rope_theta=theta, rope_scaling=scaling,
        max_position_embeddings=_positive(config, "max_position_embeddings", source),
        tie_word_embeddings=_flag(config, "tie_word_embeddings", source), attention_bias=bias,
        qk_norm=family.qk_norm, sliding_window=window, layer_types=layer_types,
        moe=_moe(config, family, layers, source) if family.moe else None, torch_dtype=dtype, hidden_act=act,
        bos_token_id=(_token_ids(config, "bos_token_id", source) or (None,))[0],
        eos_token_id=_token_ids(config, "eos_token_id", source),
    )


def load_config(path: Path) -> dict:
    """Read config.json with errors that name the file."""
    if not os.path.lexists(path):
        raise CheckpointError("config.json not found (is this a Hugging Face model directory?)", path.parent)
    return read_json_object(path)
