"""What every ONNX Runtime device shares: load the portable graph, run the device's pipeline, check, write.

A device subclasses OrtBackend with data only (its providers, options' defaults, how its graphs take
Qwen3's q/k norms) and its pipeline function; backends/README.md walks through it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from typing import Callable

import onnx

from ...kernels.schemas import DOMAIN
from ...toolkit.atomic import atomic_directory, scratch_directory
from ...toolkit.checksums import seal_folder
from ...toolkit.external_data import ExternalDataWriter
from ...toolkit.layout import MODEL_FILE, BackendManifest, PassRecord
from ..base import Backend, BuildRequest, BuildResult, Plan
from ..graph import Graph
from ..passes import Phase, run_phases
from . import custom_ops
from .artifact import copy_library, copy_side_files, nodes_per_layer, save_model, write_genai_config
from .check import check_artifact
from .context import OrtContext, QKNorm
from .options import BITS, OrtOptions

CPU_PROVIDER = "CPUExecutionProvider"
SPILL_FILE = "spill.data"


class OrtBackend(Backend[OrtOptions]):
    providers: list[str]  # session providers, preferred first
    provider_options: list[dict]  # genai_config session provider options
    install: str  # what to install for the first provider
    swiglu_domain: str = DOMAIN  # whose SwiGLU the MLP becomes without our ops (ONNX Runtime's where it has one)
    qk_norm: QKNorm  # how Qwen3's q/k norms fuse without our ops (fusions/group_query_attention.py)
    refuses_custom_ops: str | None = None  # why this device's graphs cannot take our ops
    kernel_target = "host"  # what our kernels are built for without a profile (custom_ops.kernel_target)
    pipeline_of: Callable[[Plan[OrtOptions], bool], list[Phase]]  # staticmethod: (plan, emit our ops) → phases

    @property
    def verify_provider(self) -> str:
        return self.providers[0]

    def availability(self) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, f"onnxruntime is not installed ({self.install})"
        import onnxruntime

        provider = self.providers[0]
        if provider not in onnxruntime.get_available_providers():
            return False, (f"onnxruntime {onnxruntime.__version__} has no {provider} ({self.install}); "
                           "graphs still build here")
        runs = "" if provider == CPU_PROVIDER else f" with {provider}"
        return True, f"onnxruntime {onnxruntime.__version__}{runs}"

    def resolve_options(self, raw: dict, quant: str | None = None) -> OrtOptions:
        options = super().resolve_options(raw, quant)
        if quant is not None:
            options.quant_config(quant)  # a bad block option fails now, not after the portable export
        if options.custom_ops == "on" and self.refuses_custom_ops:
            custom_ops.resolve(options, None, self.refuses_custom_ops)  # raises: fail before any work
        return options

    def custom_ops(self, plan: Plan[OrtOptions]) -> custom_ops.CustomOps:
        return custom_ops.resolve(plan.options, plan.profile, self.refuses_custom_ops, self.kernel_target)

    def pipeline(self, plan: Plan[OrtOptions]) -> list[Phase]:
        return self.pipeline_of(plan, self.custom_ops(plan).emit)

    def context(self, plan: Plan[OrtOptions], emit: bool) -> OrtContext:
        return OrtContext(num_layers=plan.spec.num_layers, max_positions=plan.spec.max_position_embeddings,
                          moe=plan.spec.moe, quant=plan.options.quant_config(plan.quant),
                          swiglu_domain=DOMAIN if emit else self.swiglu_domain,
                          qk_norm="qwdeploy" if emit else self.qk_norm,
                          attention_bf16=plan.options.attention_bf16 and plan.quant in BITS,
                          half_cache=plan.options.kv_dtype == "f16" and plan.quant in BITS)

    def build(self, request: BuildRequest[OrtOptions]) -> BuildResult:
        plan = request.plan
        ops = self.custom_ops(plan)
        # The weights stay in the portable graph's data file until a pass reads one or the writer copies it;
        # the weights passes make wait in a scratch data file until the writer copies them too.
        with scratch_directory(request.out) as scratch, open(scratch / SPILL_FILE, "wb") as spill, \
                atomic_directory(request.out, force=request.force, inputs=request.inputs) as tmp:
            model = onnx.load(str(request.portable / MODEL_FILE), load_external_data=False)
            graph = Graph(model, request.portable, ExternalDataWriter(spill, str(scratch / SPILL_FILE), digest=False))
            reports = run_phases(graph, self.pipeline_of(plan, ops.emit), self.context(plan, ops.emit), deferred=True)
            per_layer = nodes_per_layer(graph.model)
            digests = save_model(graph.model, tmp, request.portable, graph.made_rows)
            del graph, model  # the new weights are on disk now; the session check loads them again
            copy_side_files(request.portable, tmp)
            library = copy_library(ops.built(), tmp) if ops.emit else None
            write_genai_config(request.portable, tmp, self.provider_options, library)
            checked = check_artifact(tmp / MODEL_FILE, self.providers,
                                     tmp / library if library and ops.loads_here() else None)
            BackendManifest(
                backend=self.name, quant=plan.quant, options={**asdict(plan.options), "custom_ops": ops.requested},
                custom_ops=ops.record(), nodes_per_layer={str(k): v for k, v in per_layer.items()},
                graph_check=checked, passes=tuple(PassRecord(phase, r.name, r.count) for phase, r in reports),
            ).write(tmp)
            seal_folder(tmp, digests)
        return BuildResult(request.out, reports, self._summary(plan, ops, per_layer, checked, reports))

    def _summary(self, plan: Plan[OrtOptions], ops: custom_ops.CustomOps, per_layer: dict[int, int], checked: str,
                 reports: list) -> list[tuple[str, str]]:
        summary = [("backend", f"{self.name}, {plan.quant}"),
                   ("nodes per layer", ", ".join(map(str, sorted(set(per_layer.values())))) or "-"),
                   ("graph check", checked),
                   *((f"{phase}: {r.name}", str(r.count)) for phase, r in reports)]
        if plan.options.explain:
            summary += [(f"  rejected by {r.name}", f"{node}: {why}") for _, r in reports for node, why in r.rejections]
        if ops.requested != "off":
            summary.append(("custom ops", f"{'yes' if ops.emit else 'no'}: {ops.why}"))
        return summary

