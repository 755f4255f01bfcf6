"""The plan's choice rule applied per target, and the Pareto front of quality against speed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .plan import Rule
from .results import DONE, FIGURES, CellResult

# A limit of the rule → (the figure it bounds, True when the figure must not exceed it).
LIMITS: dict[str, tuple[str, bool]] = {"max_ppl_ratio": ("ppl_ratio", True), "max_kl": ("kl_mean", True),
                                       "min_top1": ("top1", False)}


@dataclass(frozen=True)
class Choice:
    target: str
    cell: str | None  # None: no cell meets the rule
    why: str


def describe(rule: Rule) -> str:
    """'fastest decode, fitting the budget, with ppl ratio <= 1.05'."""
    limits = [f"{FIGURES[figure].label} {'<=' if upper else '>='} {getattr(rule, key):g}"
              for key, (figure, upper) in LIMITS.items() if getattr(rule, key) is not None]
    return ", ".join([FIGURES[rule.by].best, "fitting the budget", *(["with " + " and ".join(limits)] if limits else [])])


def _meets(cell: CellResult, rule: Rule) -> bool:
    if cell.status != DONE or cell.fit is None or not cell.fit.fits or cell.figure(rule.by) is None:
        return False
    for key, (figure, upper) in LIMITS.items():
        limit, value = getattr(rule, key), cell.figure(figure)
        if limit is not None and (value is None or (value > limit if upper else value < limit)):
            return False
    return True


def choose(cells: Sequence[CellResult], targets: Sequence[str], rule: Rule) -> tuple[Choice, ...]:
    """The best cell per target by `rule.by` among those that meet every limit."""
    figure, choices = FIGURES[rule.by], []
    for target in targets:
        ran = [c for c in cells if c.target == target and c.status == DONE]
        eligible = [c for c in ran if _meets(c, rule)]
        if not eligible:
            why = f"none of its {len(ran)} finished cells meets the rule" if ran else "no cell finished"
            choices.append(Choice(target, None, why))
            continue
        best = (max if figure.higher_is_better else min)(eligible, key=lambda c: c.figure(rule.by))
        choices.append(Choice(target, best.id, f"{figure.label} {best.figure(rule.by):.4g}, best of "
                                               f"{len(eligible)} cells meeting the rule"))
    return tuple(choices)


def pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (speed, loss) no other point beats on both (faster and no worse, or as fast
    and better), by increasing speed: the cells worth choosing between."""
    front = [i for i, (speed, loss) in enumerate(points)
             if not any(s >= speed and o <= loss and (s > speed or o < loss) for s, o in points)]
    return sorted(front, key=lambda i: points[i][0])
