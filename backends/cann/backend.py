"""The `cann` backend: an ATC-ready static fp16 decoder for one Ascend SoC, with its ATC script."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import asdict

import onnx

from ...kernels.schemas import DOMAIN
from ...toolkit.atomic import atomic_directory
from ...toolkit.checksums import seal_folder
from ...toolkit.errors import QwdeployError
from ...toolkit.layout import MODEL_FILE, PROVIDER_OPTIONS, BackendManifest, CustomOpsRecord, PassRecord
from ...toolkit.profiles import DeviceProfile
from ..base import Backend, BuildRequest, BuildResult, Plan
from ..graph import Graph
from ..ort.artifact import copy_side_files, nodes_per_layer, save_model
from ..ort.backend import CPU_PROVIDER
from ..ort.check import check_artifact
from ..passes import Context, Phase, run_phases
from . import atc
from .options import CannOptions
from .pipeline import cann_pipeline, context_length
from .support import require_supported

PROVIDER = "CANNExecutionProvider"
NO_CUSTOM_OPS = "ATC graphs hold standard ONNX ops only (qwdeploy's Ascend kernels are not ATC operators yet)"


def provider_options(options: CannOptions) -> dict[str, dict[str, str]]:
    """onnxruntime-cann's session options for this folder (its docs' names and string values)."""
    return {PROVIDER: {"device_id": "0", "arena_extend_strategy": "kNextPowerOfTwo",
                       "precision_mode": options.precision_mode, "enable_cann_graph": "1"}}


class CannBackend(Backend[CannOptions]):
    name = "cann"
    description = "Huawei Ascend NPU through CANN: ATC-ready static fp16 decoder"
    quants = ("f16",)
    portable = "f16"
    defaults = CannOptions()
    verify_provider = CPU_PROVIDER  # the static graph is checked on the CPU here; NPU numerics need the device

    def availability(self) -> tuple[bool, str]:
        if shutil.which("atc"):
            return True, f"atc at {shutil.which('atc')}"
        if importlib.util.find_spec("onnxruntime") is not None:
            import onnxruntime

            if PROVIDER in onnxruntime.get_available_providers():
                return True, f"onnxruntime {onnxruntime.__version__} with {PROVIDER}"
        return False, "no atc (CANN toolkit) and no onnxruntime-cann here; graphs and ATC scripts still build here"

    def check_profile(self, profile: DeviceProfile | None) -> None:
        if profile is None or profile.accelerator.kind != "ascend":
            raise QwdeployError("--target cann compiles for one Ascend SoC: add --profile ascend-310p, ascend-310b, "
                                "ascend-910b or a TOML profile with [accelerator] kind = \"ascend\"")

    def pipeline(self, plan: Plan[CannOptions]) -> list[Phase]:
        return cann_pipeline(plan)

    def build(self, request: BuildRequest[CannOptions]) -> BuildResult:
        plan, profile = request.plan, request.plan.profile
        self.check_profile(profile)
        model = onnx.load(str(request.portable / MODEL_FILE), load_external_data=False)
        graph = Graph(model, request.portable)
        context = Context(num_layers=plan.spec.num_layers, max_positions=plan.spec.max_position_embeddings,
                          moe=plan.spec.moe)
        reports = run_phases(graph, self.pipeline(plan), context)
        require_supported(graph.model, profile.accelerator.cann_version, request.out)  # before anything is written
        per_layer = nodes_per_layer(graph.model)
        command = atc.atc_command(graph.model, profile, plan.options)
        with atomic_directory(request.out, force=request.force, inputs=request.inputs) as tmp:
            digests = save_model(graph.model, tmp, request.portable)
            del graph, model
            copy_side_files(request.portable, tmp)
            (tmp / PROVIDER_OPTIONS).write_text(json.dumps(provider_options(plan.options), indent=2) + "\n")
            atc.write_script(tmp, command, profile)
            compiled = atc.run_atc(tmp, command)
            checked = check_artifact(tmp / MODEL_FILE, [CPU_PROVIDER], None)
            BackendManifest(
                backend=self.name, quant=plan.quant, options=asdict(plan.options),
                custom_ops=CustomOpsRecord("off", False, NO_CUSTOM_OPS, DOMAIN, None, None),
                nodes_per_layer={str(k): v for k, v in per_layer.items()}, graph_check=checked,
                passes=tuple(PassRecord(phase, r.name, r.count) for phase, r in reports),
            ).write(tmp)
            seal_folder(tmp, digests)
        summary = [("backend", f"{self.name}, {plan.quant}, {profile.accelerator.soc_version} "
                               f"(CANN {profile.accelerator.cann_version})"),
                   ("static graph", f"KV buffers of {context_length(plan)} slots, gears "
                                    f"{','.join(map(str, plan.options.gears))}"),
                   ("graph check", checked),
                   ("atc", compiled or f"not on PATH: run {atc.SCRIPT} where the CANN toolkit is installed"),
                   *((f"{phase}: {r.name}", str(r.count)) for phase, r in reports)]
        return BuildResult(request.out, reports, summary)


BACKEND = CannBackend()
