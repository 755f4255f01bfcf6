"""`qwdeploy export --format onnx`: the portable decoder folder (graph, weights, tokenizer, genai config)."""

from __future__ import annotations

import shutil
from dataclasses import replace

from ...toolkit.atomic import atomic_directory, check_output, scratch_directory
from ...toolkit.checksums import seal_folder
from ...toolkit.errors import QwdeployError, UnsupportedModelError
from ...toolkit.layout import DATA_FILE, GENAI_CONFIG, GENERATION_CONFIG, MODEL_FILE
from ...toolkit.profiles import DeviceProfile
from ...toolkit.spec import ModelSpec
from ..request import ExportRequest, ExportResult
from .builder import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from .dtypes import PRECISIONS, Precision, precision_for
from .genai_config import genai_config, write_genai_config
from .rope import SUPPORTED_ROPE
from .writer import write_onnx

VIAS = ("native", "optimum")


def unsupported_reason(spec: ModelSpec) -> str | None:
    kind = spec.rope_scaling.type if spec.rope_scaling else "default"
    if kind not in SUPPORTED_ROPE:
        return f"rope_scaling type '{kind}' is not supported (supported: {', '.join(SUPPORTED_ROPE)})"
    if spec.sliding_window is not None:
        return "sliding-window attention layers are not supported by the ONNX builder yet"
    if spec.head_dim % 2:
        return f"head_dim {spec.head_dim} is odd; rotary embeddings need an even head_dim"
    return None


def _precision(request: ExportRequest) -> Precision:
    # A profile's integer onnx_quant belongs to its backend pass; the portable graph then stays fp32.
    if request.quant is None and request.profile is not None and request.profile.deploy.onnx_quant in PRECISIONS:
        return PRECISIONS[request.profile.deploy.onnx_quant]
    return precision_for(request.quant)


def _opset(profile: DeviceProfile | None) -> int:
    opset = profile.deploy.onnx_opset if profile is not None else DEFAULT_OPSET
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise QwdeployError(f"profile '{profile.name}': onnx_opset {opset} is outside the supported "
                            f"{MIN_OPSET}-{MAX_OPSET}")
    return opset


def _export_for_target(request: ExportRequest) -> ExportResult:
    """The portable graph, written to a temporary folder, handed to the backend named by --target."""
    from ...backends import BACKENDS
    from ...backends.base import BuildRequest

    backend = BACKENDS.get(request.target)
    quant = backend.resolve_quant(request.quant, request.profile)
    options = backend.resolve_options(request.options, quant)
    out = check_output(request.out, request.inputs)
    with scratch_directory(out) as tmp:
        portable = replace(request, out=tmp / "portable", target=None,
                           quant=backend.portable_precision(quant), force=False, options={})
        export(portable)
        built = backend.build(BuildRequest(portable.out, out, request.checkpoint.spec, quant, options,
                                           request.profile, request.force, tuple(request.inputs)))
    return ExportResult(built.path, built.summary)


def export(request: ExportRequest) -> ExportResult:
    if request.target is not None:
        return _export_for_target(request)
    if request.via not in VIAS:
        raise QwdeployError(f"--via {request.via}: unknown ONNX strategy; use one of {', '.join(VIAS)}")
    checkpoint = request.checkpoint
    precision, opset = _precision(request), _opset(request.profile)
    if request.via == "optimum":
        from .optimum import export_with_optimum

        return export_with_optimum(request, precision, opset)
    reason = unsupported_reason(checkpoint.spec)
    if reason:
        raise UnsupportedModelError(f"cannot export to onnx: {reason}", checkpoint.directory)
    runtime_config = genai_config(checkpoint, MODEL_FILE)  # tokenizer and special ids checked before any work
    with atomic_directory(request.out, force=request.force, inputs=request.inputs) as tmp:
        written = write_onnx(checkpoint, precision, opset, tmp / MODEL_FILE, request.show_progress)
        for source in checkpoint.tokenizer_files():
            shutil.copy2(source, tmp / source.name)
        if (checkpoint.directory / GENERATION_CONFIG).is_file():
            shutil.copy2(checkpoint.directory / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
        write_genai_config(tmp / GENAI_CONFIG, runtime_config)
        seal_folder(tmp, written.digests)
    return ExportResult(request.out, [
        ("graph", f"{MODEL_FILE}: {written.nodes} nodes, opset {opset}, standard ops only"),
        ("weights", f"{precision.name}, {written.weight_bytes / 2**20:.1f} MiB in {DATA_FILE}"),
        ("runtime config", GENAI_CONFIG),
    ])
