"""Run an exported ONNX folder with ONNX Runtime (in a child process) and compare its logits with transformers'.

The bounds are what a correct graph of each precision reaches, so a folder outside them computes
something else: the export fails rather than writing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...toolkit.engines import run_isolated
from ...toolkit.errors import ArtifactError, MissingDependencyError
from ...toolkit.metrics import Agreement, agreement
from ...toolkit.profiles import DTYPE_ALIASES
from ...toolkit.reference import prompt_ids, transformers_logits
from ...toolkit.runtimes.ort.facts import foreign_kernels
from ...toolkit.runtimes.ort.session import OrtSession, onnxruntime_installed

ENGINE = "ONNX Runtime"
VERIFY_ADVICE = "the folder itself may be fine: pass --no-verify to skip running it"
DECODE_STEPS = 4  # the prompt's last tokens go in one at a time, so the KV-cache path is checked too


@dataclass(frozen=True)
class Bound:
    min_top1: float
    max_kl: float  # mean KL(transformers || ours), nats
    max_relative: float = math.inf  # largest |Δlogit| over the largest |logit|: only where rounding is negligible

    def problem(self, result: Agreement, scale: float) -> str | None:
        if result.top1 < self.min_top1:
            return f"top-1 {result.top1:.1%} < {self.min_top1:.0%}"
        if not result.kl_mean <= self.max_kl:  # NaN logits fail too
            return f"KL mean {result.kl_mean:.2e} > {self.max_kl:.0e}"
        if not result.max_abs <= self.max_relative * scale:
            return f"max |Δlogit| {result.max_abs:.2e} > {self.max_relative:.0e} of the largest logit ({scale:.1f})"
        return None


# By the precision the graph's weights (or compute) have, on the verify prompt. Measured on the demo
# checkpoints, tiny and small (0.5B shape), of all four architectures (mean KL vs transformers fp32, top-1):
#   f32/bf16 graphs of a bf16 checkpoint  < 1e-11 (100%), max |Δlogit| < 2e-6 of the largest: summation order
#   f16   1.5e-6 .. 5.3e-6 (100%)
#   int8  2.2e-3 .. 8.9e-3 (90-100%); small qwen3moe 4.1e-2, where int8 noise swaps near-tied random routers
#   int4  0.41 .. 1.22 (20-40%, method=rtn alike): random weights are int4's worst case; real ones do far better
#   damaged: uniform logits 4.4 (0%), another seed's weights 9 (0%), one MLP zeroed 2.0 .. 3.8, every matrix
#   scaled by 1.1 0.23 .. 0.43
# f16 and bf16 reuse the bounds tests/parity holds f16/bf16 GGUF files to; f32 must do as well as f16 and
# within 1e-3 of the largest logit. Integer graphs have no reference to be judged against here, so their
# bounds catch graphs that compute something else: int4 at half the KL of uniform logits (1.6x the worst
# measured; its top-1 says nothing on these weights), int8 under int4's own noise (2.4x the worst measured)
# with the top-1 floor tests/backends holds int8 graphs to.
BOUNDS = {
    "f32": Bound(min_top1=1.0, max_kl=2e-5, max_relative=1e-3),
    "f16": Bound(min_top1=0.95, max_kl=2e-5),
    "bf16": Bound(min_top1=0.9, max_kl=5e-4),
    "int8": Bound(min_top1=0.75, max_kl=0.1),
    "int4": Bound(min_top1=0.0, max_kl=2.0),
}


def onnx_logits(folder: Path, ids: list[int], provider: str) -> np.ndarray:
    """The folder's logits [seq, vocab] for one sequence: a prefill, then single-token steps on its KV cache.

    Runs in the calling process; `verify_folder` calls it in a child."""
    # The profiler's session already feeds these graphs (KV cache, mask, positions, kernel library): reused.
    session = OrtSession(folder, provider, threads=None, options={})
    cache = session.new_cache(1)
    split = max(1, len(ids) - DECODE_STEPS)
    chunks = [ids[:split], *([token] for token in ids[split:])]
    logits = [session.forward(session.session, np.array([chunk], np.int64), cache)[0] for chunk in chunks]
    return np.concatenate(logits)


def skip_reason(folder: Path, provider: str) -> str | None:
    """Why this machine cannot run the folder as its device would, or None."""
    import onnxruntime

    if provider not in onnxruntime.get_available_providers():
        return f"no {provider.removesuffix('ExecutionProvider')} here"
    return foreign_kernels(folder)


def verify_folder(folder: Path, checkpoint_dir: Path, precision: str, provider: str, shown_as: Path) -> str:
    """A summary line of how `folder`'s logits agree with transformers' on the checkpoint it came from.

    Raises ArtifactError (naming `shown_as`, where the folder is going) when they disagree beyond `precision`'s
    bound, and EngineError when ONNX Runtime fails or crashes on it."""
    if not onnxruntime_installed():
        raise MissingDependencyError("ONNX verification needs onnxruntime: pip install 'qwdeploy[onnx]'")
    reason = skip_reason(folder, provider)
    if reason:
        return f"skipped ({reason})"
    ids = prompt_ids(checkpoint_dir)
    reference = transformers_logits(checkpoint_dir, ids)
    ours = run_isolated(ENGINE, shown_as, f"evaluating {shown_as.name}", VERIFY_ADVICE,
                        onnx_logits, folder, ids, provider)
    if ours.shape != reference.shape:
        raise ArtifactError(f"logits of shape {ours.shape}, transformers' {reference.shape}; nothing was written",
                            shown_as)
    result = agreement(reference, ours)
    name = DTYPE_ALIASES.get(precision, precision)
    problem = BOUNDS[name].problem(result, float(np.abs(reference).max()))
    if problem:
        raise ArtifactError(f"{name} logits disagree with transformers ({problem}; {result.summary()}); "
                            "nothing was written", shown_as)
    return f"{result.summary()} vs transformers"
