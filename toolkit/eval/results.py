"""What an evaluation found, per artifact and for the reference: typed, turned into JSON and tables elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics import Agreement
from .needle import Cell
from .options import EvalOptions
from .perplexity import Perplexity
from .positions import Bucket
from .targets import Target
from .text import Text

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    status: str  # PASS, FAIL or SKIPPED
    answer: str | None  # the greedy answer, decoded; None when skipped
    reason: str | None  # why skipped


@dataclass(frozen=True)
class NeedleMatch:
    """Where the reference retrieves (among the cells both ran), how often the artifact does too."""

    reference_passed: int
    also_passed: int
    missed: tuple[Cell, ...]  # the reference retrieves, the artifact does not

    @property
    def share(self) -> float | None:
        return self.also_passed / self.reference_passed if self.reference_passed else None


def needle_match(artifact: tuple[CellResult, ...], reference: tuple[CellResult, ...]) -> NeedleMatch:
    both = [(a, r) for a, r in zip(artifact, reference) if r.status == PASS and a.status != SKIPPED]
    missed = tuple(a.cell for a, _ in both if a.status != PASS)
    return NeedleMatch(len(both), len(both) - len(missed), missed)


@dataclass(frozen=True)
class Speed:
    decode_tokens_per_s: float  # medians of a `qwdeploy profile` document
    prefill_tokens_per_s: float
    source: str  # the profile.json read


@dataclass(frozen=True)
class ReferenceResult:
    target: Target
    positions: int
    perplexity: float
    needle: tuple[CellResult, ...] | None
    speed: Speed | None
    notes: tuple[str, ...]  # what was cut short, and why


@dataclass(frozen=True)
class ArtifactResult:
    target: Target
    positions: int  # scored: the text's tokens up to the artifact's context
    agreement: Agreement  # over every scored position
    buckets: tuple[Bucket, ...]
    perplexity: Perplexity
    needle: tuple[CellResult, ...] | None
    match: NeedleMatch | None
    speed: Speed | None
    notes: tuple[str, ...]  # what was cut short, and why


@dataclass(frozen=True)
class EvalReport:
    options: EvalOptions
    text: Text
    text_tokens: int  # of the whole text, before --positions and contexts cut it
    reference: ReferenceResult
    artifacts: tuple[ArtifactResult, ...]
    failures: tuple[str, ...]  # gates not met, one line each


def notes(report: EvalReport) -> list[tuple[str, str]]:
    """(model name, note) for the reference and each artifact."""
    return [(model.target.path.name, note) for model in (report.reference, *report.artifacts) for note in model.notes]
