"""`qwdeploy export --format onnx`: the portable decoder folder (graph, weights, tokenizer, genai config)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ...toolkit.atomic import atomic_directory, check_output, scratch_directory
from ...toolkit.checksums import seal_folder
from ...toolkit.errors import QwdeployError, UnsupportedModelError
from ...toolkit.layout import DATA_FILE, GENAI_CONFIG, GENERATION_CONFIG, MODEL_FILE
from ...toolkit.profiles import DeviceProfile
from ...toolkit.reference import VERIFY_MAX_PARAMETERS, reference_installed
from ...toolkit.runtimes.ort.session import onnxruntime_installed
from ...toolkit.spec import ModelSpec
from ...toolkit.tensors import parameter_count
from ..request import ExportRequest, ExportResult
from .builder import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from .dtypes import PRECISIONS, Precision, precision_for
from .genai_config import genai_config, write_genai_config
from .rope import SUPPORTED_ROPE
from .verify import verify_folder
from .writer import write_onnx

VIAS = ("native", "optimum")
PORTABLE_PROVIDER = "CPUExecutionProvider"  # a portable graph is checked where every ONNX Runtime runs


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
    from ...backends.base import BuildRequest, Plan

    backend = BACKENDS.get(request.target)
    backend.check_profile(request.profile)
    quant = backend.resolve_quant(request.quant, request.profile)
    options = backend.resolve_options(request.options, quant)
    out = check_output(request.out, request.inputs)
    # The backend writes its folder whole into `final`, which becomes `out` only after verification.
    with atomic_directory(out, force=request.force, inputs=request.inputs) as final, scratch_directory(out) as tmp:
        # The backend reads the portable graph once and rewrites every file: its weights stay in the checkpoint,
        # cast as the build reads them, so a quantized build never writes a float32 copy (2 GB for 0.5B).
        portable = replace(request, out=tmp / "portable", target=None, quant=backend.portable, force=False,
                           options={}, verify=False, intermediate=True)
        export(portable)
        plan = Plan(quant, options, request.checkpoint.spec, request.profile)
        built = backend.build(BuildRequest(portable.out, final, plan, request.force, tuple(request.inputs)))
        checked = _verify(request, final, quant, backend.verify_provider)
    return ExportResult(out, built.summary + checked)


def _verify(request: ExportRequest, folder: Path, precision: str, provider: str) -> list[tuple[str, str]]:
    """The summary row of --verify (none with --no-verify); run before `folder` is renamed into place, so a
    graph that fails it is never written. As for GGUF, it is on by default for models small enough to run
    twice here, when ONNX Runtime and transformers are installed."""
    verify = request.verify
    if verify is None:
        verify = (parameter_count(request.checkpoint.spec) <= VERIFY_MAX_PARAMETERS and onnxruntime_installed()
                  and reference_installed())
    if not verify:
        return []
    return [("verify", verify_folder(folder, request.checkpoint.directory, precision, provider, request.out))]


def export(request: ExportRequest) -> ExportResult:
    if request.target is not None:
        return _export_for_target(request)
    if request.via not in VIAS:
        raise QwdeployError(f"--via {request.via}: unknown ONNX strategy; use one of {', '.join(VIAS)}")
    checkpoint = request.checkpoint
    precision, opset = _precision(request), _opset(request.profile)
    if request.via == "optimum":
        from .optimum import export_with_optimum

        with atomic_directory(request.out, force=request.force, inputs=request.inputs) as final:
            traced = export_with_optimum(replace(request, out=final), precision, opset)
            checked = _verify(request, final, precision.name, PORTABLE_PROVIDER)
        return ExportResult(request.out, traced.summary + checked)
    reason = unsupported_reason(checkpoint.spec)
    if reason:
        raise UnsupportedModelError(f"cannot export to onnx: {reason}", checkpoint.directory)
    runtime_config = genai_config(checkpoint, MODEL_FILE)  # tokenizer and special ids checked before any work
    with atomic_directory(request.out, force=request.force, inputs=request.inputs) as tmp:
        written = write_onnx(checkpoint, precision, opset, tmp / MODEL_FILE, request.show_progress,
                             request.intermediate)
        for source in checkpoint.tokenizer_files():
            shutil.copy2(source, tmp / source.name)
        if (checkpoint.directory / GENERATION_CONFIG).is_file():
            shutil.copy2(checkpoint.directory / GENERATION_CONFIG, tmp / GENERATION_CONFIG)
        write_genai_config(tmp / GENAI_CONFIG, runtime_config)
        if not request.intermediate:
            seal_folder(tmp, written.digests)
        checked = _verify(request, tmp, precision.name, PORTABLE_PROVIDER)
    return ExportResult(request.out, [
        ("graph", f"{MODEL_FILE}: {written.nodes} nodes, opset {opset}, standard ops only"),
        ("weights", f"{precision.name}, {written.weight_bytes / 2**20:.1f} MiB in {DATA_FILE}"),
        ("runtime config", GENAI_CONFIG),
        *checked,
    ])
