"""PNGs: each model's needle grid as a heatmap, and every artifact's agreement by position."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..profiler.outputs.png import pyplot
from .needle import depth_fractions
from .results import FAIL, PASS, SKIPPED, CellResult, EvalReport

# Category → (colour, label): the artifact's status, and whether the reference retrieved the cell.
CATEGORIES = (
    ("#55a868", "retrieved"),
    ("#c44e52", "missed where the reference retrieves"),
    ("#e6b0aa", "neither retrieves"),
    ("#d0d0d0", "beyond the context"),
)
KL_FLOOR = 1e-16  # identical logits have KL 0, which a log axis cannot show


def _category(cell: CellResult, reference: CellResult) -> int:
    if SKIPPED in (cell.status, reference.status):
        return 3
    if cell.status == PASS:
        return 0
    return 1 if reference.status == PASS else 2


def write_heatmap(title: str, cells: tuple[CellResult, ...], reference: tuple[CellResult, ...], depths: int,
                  path: Path) -> None:
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    contexts = [cells[i].cell.context for i in range(0, len(cells), depths)]
    grid = np.array([_category(c, r) for c, r in zip(cells, reference)]).reshape(len(contexts), depths)
    fig, ax = plt.subplots(figsize=(1.2 * depths + 5, 0.6 * len(contexts) + 2.4))
    ax.imshow(grid, cmap=ListedColormap([colour for colour, _ in CATEGORIES]), vmin=0, vmax=len(CATEGORIES) - 1,
              aspect="auto")
    for (row, column), value in np.ndenumerate(grid):
        ax.text(column, row, "-" if value == 3 else cells[row * depths + column].status, ha="center", va="center",
                fontsize="small")
    ax.set_xticks(range(depths), [f"{d:.0%}" for d in depth_fractions(depths)])
    ax.set_yticks(range(len(contexts)), [str(c) for c in contexts])
    ax.set_xlabel("needle depth")
    ax.set_ylabel("context (tokens)")
    ax.set_title(title, fontsize="medium")
    ax.legend(handles=[Patch(color=colour, label=label) for colour, label in CATEGORIES], fontsize="x-small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def write_agreement(report: EvalReport, path: Path) -> None:
    """Mean KL and top-1 agreement per position bucket, one line per artifact."""
    plt = pyplot()
    fig, (kl_ax, top_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for result in report.artifacts:
        labels = [b.label for b in result.buckets]
        kl_ax.plot(labels, [max(b.agreement.kl_mean, KL_FLOOR) for b in result.buckets], "o-",
                   label=result.target.path.name)
        top_ax.plot(labels, [b.agreement.top1 * 100 for b in result.buckets], "o-", label=result.target.path.name)
    kl_ax.set_yscale("log")
    kl_ax.set_ylabel("mean KL(reference || artifact), nats")
    top_ax.set_ylabel("top-1 agreement (%)")
    top_ax.set_ylim(0, 102)
    for ax in (kl_ax, top_ax):
        ax.set_xlabel("positions")
        ax.legend(fontsize="small")
    fig.suptitle(f"agreement with {report.reference.target.path.name} by position", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def needle_title(name: str, cells: tuple[CellResult, ...], reference: tuple[CellResult, ...]) -> str:
    ran = [(c, r) for c, r in zip(cells, reference) if SKIPPED not in (c.status, r.status)]
    retrieved = sum(c.status == PASS for c, _ in ran)
    missed = sum(c.status == FAIL and r.status == PASS for c, r in ran)
    return f"{name}\n{retrieved} of {len(ran)} needles retrieved, {missed} missed where the reference retrieves"
