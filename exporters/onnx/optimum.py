"""`--via optimum`: optimum's traced export, for comparison and for what the native builder lacks.

optimum names the decoder I/O as we do (input_ids, attention_mask, position_ids,
past_key_values.N.key/value → logits, present.N.key/value), so the same genai_config.json applies.
"""

from __future__ import annotations

from ...toolkit.atomic import atomic_directory
from ...toolkit.checksums import seal_folder
from ...toolkit.layout import GENAI_CONFIG, MODEL_FILE
from ...toolkit.errors import MissingDependencyError, QwdeployError
from ..request import ExportRequest, ExportResult
from .dtypes import Precision
from .genai_config import genai_config, write_genai_config

TASK = "text-generation-with-past"


def export_with_optimum(request: ExportRequest, precision: Precision, opset: int) -> ExportResult:
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise MissingDependencyError("--via optimum needs optimum: pip install 'qwdeploy[optimum]'") from None
    if precision.name != "f32":
        # optimum exports fp16 only on a CUDA device and has no bf16 export.
        raise QwdeployError(f"--via optimum --quant {precision.name}: only f32 is supported on CPU; "
                            "use the native builder for f16/bf16")
    checkpoint = request.checkpoint
    runtime_config = genai_config(checkpoint, MODEL_FILE)  # tokenizer and special ids checked before any work
    with atomic_directory(request.out, force=request.force, inputs=request.inputs) as tmp:
        main_export(str(checkpoint.directory), output=tmp, task=TASK, opset=opset, device="cpu",
                    do_validation=False)
        write_genai_config(tmp / GENAI_CONFIG, runtime_config)
        seal_folder(tmp)
    return ExportResult(request.out, [("graph", f"{MODEL_FILE} traced by optimum, opset {opset}"),
                                      ("runtime config", GENAI_CONFIG)])
