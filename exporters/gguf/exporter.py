"""`qwdeploy export --format gguf`: one streamed pass from safetensors to a llama.cpp file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ...toolkit.atomic import atomic_file
from ...toolkit.checkpoint import Checkpoint
from ...toolkit.checksums import seal_gguf
from ...toolkit.errors import QwdeployError
from ...toolkit.reference import VERIFY_MAX_PARAMETERS
from ...toolkit.runtimes.llamacpp.native import llama_cpp_installed
from ...toolkit.spec import ModelSpec
from ...toolkit.tensors import parameter_count
from ..request import ExportRequest, ExportResult
from .metadata import general_metadata, model_metadata
from .names import ARCHITECTURES
from .plan import PlannedTensor, encoded_chunks, plan_tensors
from .quant import QUANT_TYPES, QuantType, quant_type
from .verify import compare_with_transformers, llama_quantize
from .vocab import vocab_metadata
from .writer import write_gguf

ROPE_TYPES = ("linear", "yarn")
# llama.cpp hard-codes whether routing weights are renormalised per architecture.
NORM_TOPK = {"qwen2moe": False, "qwen3moe": True}
# What a K-quant is made from: the source's own float type, so nothing is rounded twice.
INTERMEDIATE = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}


def unsupported_reason(spec: ModelSpec) -> str | None:
    arch = ARCHITECTURES[spec.model_type]
    if spec.sliding_window is not None:
        return f"llama.cpp's {arch} has no sliding-window attention (sliding_window={spec.sliding_window})"
    if spec.rope_scaling is not None and spec.rope_scaling.type not in ROPE_TYPES:
        return f"llama.cpp reads rope scaling {', '.join(ROPE_TYPES)}, not '{spec.rope_scaling.type}'"
    if spec.moe is not None:
        dense = [i for i in range(spec.num_layers) if not spec.is_moe_layer(i)]
        if dense:
            return f"llama.cpp's {arch} expects every layer to be sparse; layers {dense} are dense"
        if spec.moe.norm_topk_prob != NORM_TOPK[arch]:
            return f"llama.cpp's {arch} assumes norm_topk_prob={NORM_TOPK[arch]}"
    return None


def _default_quant(request: ExportRequest) -> str:
    if request.quant:
        return request.quant
    if request.profile:
        return request.profile.deploy.gguf_quant
    return "f16"


def _device_note(request: ExportRequest, quant: QuantType) -> list[tuple[str, str]]:
    """On an Ascend profile, where llama.cpp's CANN backend runs this file's matmuls (why its default is what it is)."""
    if request.profile is None or request.profile.accelerator.kind != "ascend":
        return []
    from ...backends.cann.gguf_support import quant_note

    return [("matmuls", quant_note(request.profile, quant.name))]


def _check_profile(request: ExportRequest, quant: QuantType) -> None:
    profile = request.profile
    if profile and quant.name not in profile.deploy.dtypes:
        raise QwdeployError(f"profile '{profile.name}' does not run {quant.name}; "
                            f"it supports: {', '.join(d for d in profile.deploy.dtypes if d in QUANT_TYPES)}")


def _write(ckpt: Checkpoint, path: Path, quant: QuantType, show_progress: bool) -> list[PlannedTensor]:
    arch = ARCHITECTURES[ckpt.spec.model_type]
    tensors = plan_tensors(ckpt.validate(), quant.tensor_type)
    metadata = general_metadata(ckpt.directory, quant) + model_metadata(ckpt.spec, arch) + vocab_metadata(ckpt)
    total = sum(t.nbytes for t in tensors)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"gguf {quant.name}",
              disable=None if show_progress else True) as bar:
        write_gguf(path, arch, metadata, tensors, lambda t: encoded_chunks(ckpt, t), bar.update)
    return tensors


def export(request: ExportRequest) -> ExportResult:
    ckpt = request.checkpoint
    quant = quant_type(_default_quant(request))
    _check_profile(request, quant)
    device_note = _device_note(request, quant)
    if request.target or request.via != "native":
        raise QwdeployError("--target and --via apply to ONNX exports only")
    verify = request.verify
    if verify is None:
        verify = parameter_count(ckpt.spec) <= VERIFY_MAX_PARAMETERS and llama_cpp_installed()
    with atomic_file(request.out, force=request.force, inputs=request.inputs) as tmp:
        if quant.by_llama:
            source = tmp.with_name(tmp.name + ".source")
            try:
                base = QUANT_TYPES[INTERMEDIATE.get(ckpt.spec.torch_dtype, "f32")]
                _write(ckpt, source, base, request.show_progress)
                llama_quantize(source, tmp, int(quant.file_type), quant.name)
                seal_gguf(tmp)  # llama.cpp copied the intermediate's digest; this file needs its own
            finally:
                source.unlink(missing_ok=True)
            types = None
        else:
            types = Counter(t.qtype.name for t in _write(ckpt, tmp, quant, request.show_progress))
        summary = [("type", quant.name), ("size", f"{tmp.stat().st_size / 1024**2:.1f} MiB")]
        if types:
            summary.append(("tensor types", ", ".join(f"{k} x{v}" for k, v in types.most_common())))
        summary += device_note
        if verify:
            summary.append(("vs transformers", compare_with_transformers(tmp, ckpt.directory).summary()))
    return ExportResult(request.out, summary)
