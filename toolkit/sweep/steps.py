"""The three steps of a cell, on whichever machine runs them: export, evaluate, profile.

Evaluation and profiling go through the adapters at the bottom, the only places that know the eval and
profiler APIs. Every native engine already runs in a child process of its own (llama.cpp's quantizer in the
GGUF exporter, eval's and the profiler's engines), so a crash costs one cell a one-line error, never the
sweep; the export itself runs in the calling process, since a child of ours could not start those children.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engines import one_line
from ..errors import QwdeployError
from .matrix import ArtifactSpec
from .plan import EvalSettings, ProfileSettings
from .results import Built, Quality, Speed, Where, finite
from .state import digest

EVAL_DEVICE = "cpu"  # eval runs its engines on the CPU of the machine it runs on


@dataclass(frozen=True)
class Failure:
    """A step that did not produce its result: one line, as the CLI would print it."""

    reason: str


def failure(exc: BaseException) -> Failure:
    return Failure(str(exc) if isinstance(exc, QwdeployError) else one_line(exc))


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export(spec: ArtifactSpec, folder: Path) -> Built:
    """Export `spec` to folder/spec.name, replacing a stale copy."""
    from ...exporters import EXPORTERS
    from ...exporters.request import ExportRequest
    from ..bundle.plan import artifact_facts
    from ..checkpoint import open_checkpoint

    checkpoint = open_checkpoint(spec.checkpoint_dir)
    checkpoint.validate()
    out = folder / spec.name
    target = spec.profile.deploy.backend if spec.profile is not None else None
    # No --verify: the sweep's own eval step measures the artifact against the checkpoint.
    EXPORTERS.get(spec.format).export(ExportRequest(checkpoint, out, quant=spec.quant, profile=spec.profile,
                                                    target=target, force=True, verify=False, show_progress=False))
    weights, kv_per_token, context = artifact_facts(out, spec.format)
    return Built(spec.name, _size(out), digest(out), weights, kv_per_token, context)


def evaluate(checkpoint: Path, artifacts: dict[str, Path], settings: EvalSettings,
             where: Where) -> dict[str, Quality | Failure]:
    """Every artifact of one checkpoint against it, in one evaluation (the checkpoint's reference pass runs
    once); when that fails, each on its own, so a faulty artifact costs only its own cells."""
    try:
        return _qualities(checkpoint, artifacts, settings, where)
    except Exception as exc:  # any step fault becomes the cell's one line
        if len(artifacts) == 1:
            return {name: failure(exc) for name in artifacts}
    return {name: outcome for one in artifacts.items()
            for name, outcome in evaluate(checkpoint, dict([one]), settings, where).items()}


def measure(artifact: Path, device: str, settings: ProfileSettings, where: Where) -> Speed:
    """TTFT, tokens/s and peak memory of one artifact on `device`, profiled in a child process."""
    from ..profiler.api import profile
    from ..profiler.runner import Settings

    docs, _ = profile([artifact], device, Settings(prompt_len=settings.prompt_len, gen=settings.gen, runs=settings.runs),
                      settings.threads, isolate=True, progress=False, roofline=False)
    summary, memory = docs[0]["summary"], docs[0]["memory"]
    return Speed(summary["ttft_s"]["median"], summary["prefill_tokens_per_s"]["median"],
                 summary["decode_tokens_per_s"]["median"], memory["host_peak_bytes"], memory["device_peak_bytes"],
                 where)


def _qualities(checkpoint: Path, artifacts: dict[str, Path], settings: EvalSettings,
               where: Where) -> dict[str, Quality | Failure]:
    """The adapter to toolkit.eval: its report → one Quality per artifact name."""
    from ..eval.api import evaluate as run_eval
    from ..eval.options import EvalOptions

    report = run_eval(EvalOptions(tuple(artifacts.values()), checkpoint, settings.text, settings.positions,
                                  progress=False))
    found = {Path(a.target.path): a for a in report.artifacts}
    qualities: dict[str, Quality | Failure] = {}
    for name, path in artifacts.items():
        result = found[Path(path)]
        ppl = result.perplexity if "perplexity" in settings.metrics else None
        agreement = result.agreement if "agreement" in settings.metrics else None
        qualities[name] = Quality(
            positions=result.positions,
            perplexity=finite(ppl.value) if ppl else None, reference_perplexity=finite(ppl.reference) if ppl else None,
            ppl_ratio=finite(ppl.ratio) if ppl else None,
            kl_mean=finite(agreement.kl_mean) if agreement else None, top1=finite(agreement.top1) if agreement else None,
            where=where)
    return qualities
