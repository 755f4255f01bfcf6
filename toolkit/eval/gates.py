"""Limits for CI (--max-kl, --max-ppl-ratio, --min-needle): each artifact that falls short, one line each."""

from __future__ import annotations

from .options import Gates
from .results import ArtifactResult


def _needle_failure(result: ArtifactResult, limit: float) -> str | None:
    match = result.match
    if match is None or match.share is None:
        return ("the reference retrieves none of the needles this artifact was given, so --min-needle has "
                "nothing to hold it to (choose --contexts the reference handles)")
    if match.share < limit:
        return (f"retrieves {match.also_passed} of the {match.reference_passed} needles the reference retrieves "
                f"({match.share:.0%}) < --min-needle {limit:.0%}")
    return None


def failures(results: tuple[ArtifactResult, ...], gates: Gates) -> tuple[str, ...]:
    found = []
    for result in results:
        problems = []
        kl, ratio = result.agreement.kl_mean, result.perplexity.ratio
        if gates.max_kl is not None and not kl <= gates.max_kl:  # NaN fails too
            problems.append(f"KL mean {kl:.3g} > --max-kl {gates.max_kl:g}")
        if gates.max_ppl_ratio is not None and not ratio <= gates.max_ppl_ratio:
            problems.append(f"perplexity ratio {ratio:.4g} > --max-ppl-ratio {gates.max_ppl_ratio:g}")
        if gates.min_needle is not None:
            problems.append(_needle_failure(result, gates.min_needle))
        found += [f"{result.target.path}: {problem}" for problem in problems if problem]
    return tuple(found)
