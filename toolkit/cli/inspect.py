from __future__ import annotations

import json

import click

from ..checkpoint import open_checkpoint
from ..spec import ModelSpec
from ..support import support_matrix
from ..tensors import active_parameter_count, parameter_count
from .table import print_rows


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def _rope(spec: ModelSpec) -> str:
    text = f"theta {spec.rope_theta:g}"
    if spec.rope_scaling:
        s = spec.rope_scaling
        text += f", {s.type} x{s.factor:g}"
        if s.original_max_position_embeddings:
            text += f" (from {s.original_max_position_embeddings})"
    return text


def _summary(spec: ModelSpec, size: int) -> list[tuple[str, str]]:
    rows = [
        ("architecture", f"{spec.architecture} ({spec.model_type})"),
        ("parameters", f"{parameter_count(spec):,}"),
        ("dtype", spec.torch_dtype),
        ("size on disk", _gib(size)),
        ("layers", str(spec.num_layers)),
        ("hidden / intermediate", f"{spec.hidden_size} / {spec.intermediate_size}"),
        ("heads / kv heads / head dim", f"{spec.num_heads} / {spec.num_kv_heads} / {spec.head_dim}"),
        ("vocab", str(spec.vocab_size)),
        ("qkv bias / qk norm", f"{spec.attention_bias} / {spec.qk_norm}"),
        ("tied embeddings", str(spec.tie_word_embeddings)),
        ("rope", _rope(spec)),
        ("context", str(spec.max_position_embeddings)),
        ("sliding window", str(spec.sliding_window) if spec.sliding_window else "off"),
    ]
    if spec.moe:
        m = spec.moe
        rows += [
            ("experts / top-k", f"{m.num_experts} / {m.top_k} (norm_topk_prob {m.norm_topk_prob})"),
            ("expert intermediate", str(m.moe_intermediate_size)),
            ("sparse layers", f"{sum(map(spec.is_moe_layer, range(spec.num_layers)))} of {spec.num_layers}"),
            ("active parameters", f"{active_parameter_count(spec):,}"),
        ]
        if m.shared_expert_intermediate_size:
            rows.append(("shared expert", f"{m.shared_expert_intermediate_size} (sigmoid gate)"))
    return rows


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option("--trust-pickle", is_flag=True, help="Allow *.bin/*.pt pickle weights (they can run code).")
def inspect(model: str, as_json: bool, trust_pickle: bool) -> None:
    """What a checkpoint is, and whether it would export.

    MODEL is a Hugging Face model directory. Every tensor the config implies is checked for
    presence and shape, so a checkpoint that would fail an export fails here.
    """
    from ...backends import BACKENDS
    from ...exporters import EXPORTERS

    ckpt = open_checkpoint(model, trust_pickle=trust_pickle)
    ckpt.validate()
    spec, size = ckpt.spec, ckpt.size_on_disk()
    exporters = support_matrix(spec, EXPORTERS)
    backends = _backends(BACKENDS, exporters.get("onnx"))
    if as_json:
        doc = {
            "path": str(ckpt.directory),
            "spec": spec.to_dict(),
            "parameters": parameter_count(spec),
            "active_parameters": active_parameter_count(spec),
            "size_bytes": size,
            "tensors": len(ckpt.expected()),
            "chat_template": ckpt.chat_template is not None,
            "exporters": {k: {"supported": v is None, "reason": v} for k, v in exporters.items()},
            "backends": backends,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    rows = _summary(spec, size)
    rows.append(("tensors", f"{len(ckpt.expected())} checked"))
    rows.append(("tokenizer", ", ".join(p.name for p in ckpt.tokenizer_files()) or "none"))
    rows.append(("chat template", "yes" if ckpt.chat_template else "no"))
    for name, reason in exporters.items():
        rows.append((f"export {name}", "yes" if reason is None else f"no: {reason}"))
    for name, state in backends.items():
        if not state["supported"]:
            rows.append((f"backend {name}", f"no: {state['reason']}"))
        else:
            where = "runs here" if state["available"] else f"not runnable here: {state['reason']}"
            rows.append((f"backend {name}", f"yes ({where})"))
    print_rows(None, rows)


def _backends(registry, onnx_reason: str | None) -> dict[str, dict]:
    """Backends rewrite the portable ONNX graph: they support what the ONNX exporter supports."""
    result = {}
    for name in registry.names():
        available, reason = registry.get(name).availability()
        result[name] = {"supported": onnx_reason is None, "available": available,
                        "reason": reason if onnx_reason is None else f"needs the ONNX graph: {onnx_reason}"}
    return result
