"""What the CPU and CUDA backends share: load the portable graph, run the pipeline, check, write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from ...kernels.schemas import DOMAIN
from ...toolkit.atomic import atomic_directory
from ...toolkit.checksums import seal_folder
from ...toolkit.errors import QwdeployError
from ...toolkit.layout import MODEL_FILE
from ..base import Backend, BuildRequest, BuildResult
from ..graph import Graph
from ..passes import Context, run_phases
from .artifact import (copy_side_files, nodes_per_layer, save_model, write_genai_config,
                       write_manifest)
from .check import check_artifact
from .options import quant_config


def kernel_library() -> Path | None:
    """The built qwdeploy kernel library, if `qwdeploy kernels build` has made one."""
    from ...kernels import library_path

    try:
        path = library_path()
    except (QwdeployError, OSError, TypeError):
        return None
    return Path(path) if path and Path(path).is_file() else None


class OrtBackend(Backend):
    providers: list[str]
    provider_options: list[dict]  # genai_config session provider options
    swiglu_domain: str | None  # ONNX Runtime's SwiGLU where this device has a kernel for it
    qk_norm: str  # how Qwen3's q/k norms fuse without our ops (see fusions/group_query_attention.py)

    def resolve_options(self, raw: dict[str, Any], quant: str | None = None) -> dict[str, Any]:
        resolved = super().resolve_options(raw, quant)
        if quant is not None:
            quant_config(quant, resolved)  # a bad block option fails now, not after the portable export
        return resolved

    def custom_ops(self, options: dict[str, Any]) -> tuple[bool, Path | None]:
        """(emit qwdeploy ops, library to register)."""
        library = kernel_library() if options["custom_ops"] != "off" else None
        return options["custom_ops"] == "on" or library is not None, library

    def context(self, request: BuildRequest) -> Context:
        emit, _ = self.custom_ops(request.options)
        return Context(options={**request.options, "quant": quant_config(request.quant, request.options),
                                "num_layers": request.spec.num_layers, "moe": request.spec.moe,
                                "swiglu_domain": DOMAIN if emit else self.swiglu_domain,
                                "qk_norm": "qwdeploy" if emit else self.qk_norm},
                       max_positions=request.spec.max_position_embeddings)

    def build(self, request: BuildRequest) -> BuildResult:
        emit, library = self.custom_ops(request.options)
        # The weights stay in the portable graph's data file until a pass reads one or the writer copies it.
        model = onnx.load(str(request.portable / MODEL_FILE), load_external_data=False)
        graph = Graph(model, request.portable)
        phases = self.pipeline(request.profile, {**request.options, "quant": request.quant})
        reports = run_phases(graph, phases, self.context(request))
        per_layer = nodes_per_layer(graph.model)
        with atomic_directory(request.out, force=request.force, inputs=request.inputs) as tmp:
            digests = save_model(graph.model, tmp, request.portable)
            del graph, model  # the new weights are on disk now; the session check loads them again
            copy_side_files(request.portable, tmp)
            write_genai_config(request.portable, tmp, self.provider_options, library)
            checked = check_artifact(tmp / MODEL_FILE, self.providers, library)
            write_manifest(tmp, {
                "backend": self.name, "quant": request.quant, "options": _jsonable(request.options),
                "custom_ops": {"domain": DOMAIN, "library": str(library) if library else None} if emit else None,
                "nodes_per_layer": per_layer, "graph_check": checked,
            }, reports)
            seal_folder(tmp, digests)
        layers = sorted(set(per_layer.values()))
        summary = [("backend", f"{self.name}, {request.quant}"),
                   ("nodes per layer", ", ".join(map(str, layers)) or "-"),
                   ("graph check", checked),
                   *((f"{phase}: {r.name}", str(r.count)) for phase, r in reports)]
        if request.options.get("explain"):
            summary += [(f"  rejected by {r.name}", f"{node}: {why}") for _, r in reports for node, why in r.rejections]
        if emit:
            summary.append(("custom ops", f"{DOMAIN} ops in the graph; library: {library or 'not built yet'}"))
        return BuildResult(request.out, reports, summary)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
