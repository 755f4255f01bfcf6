"""Constants and helpers the eval tests and their fixtures share."""

from pathlib import Path

ARCH = "qwen3"
STATIC_CONTEXT = 128  # the CANN static graph's KV buffer: shorter than the text scored and than some needle rows
DAMAGED_TENSOR = "model.layers.0.mlp.down_proj.weight"  # zeroed in the damaged artifact: one MLP gone


def export(checkpoint: Path, out: Path, fmt: str, quant: str | None, **target) -> Path:
    """`checkpoint` exported to `out` (no verification, no progress bar)."""
    from qwdeploy.exporters import EXPORTERS
    from qwdeploy.exporters.request import ExportRequest
    from qwdeploy.toolkit.checkpoint import open_checkpoint

    EXPORTERS.get(fmt).export(ExportRequest(open_checkpoint(checkpoint), out, quant=quant, verify=False,
                                            show_progress=False, **target))
    return out
