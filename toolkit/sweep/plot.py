"""Quality against speed: one panel per target with its Pareto front and choice, and all fronts together."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..atomic import atomic_file
from ..profiler.outputs.png import pyplot
from .choose import pareto
from .report import SweepReport
from .results import FIGURES, CellResult

SPEED = "decode_tokens_per_s"
LOSSES = ("ppl_ratio", "kl_mean")  # the first the cells have is the quality axis (lower is better)
PER_TARGET, FRONTS = "quality-vs-speed.png", "pareto.png"


def _loss(cells: Sequence[CellResult]) -> str | None:
    return next((name for name in LOSSES if any(c.figure(name) is not None for c in cells)), None)


def _points(cells: Sequence[CellResult], loss: str) -> list[CellResult]:
    return [c for c in cells if c.figure(SPEED) is not None and c.figure(loss) is not None]


def _panel(ax, cells: list[CellResult], loss: str, chosen: str | None, target: str) -> list[tuple[float, float]]:
    xy = [(c.figure(SPEED), c.figure(loss)) for c in cells]
    front = [xy[i] for i in pareto(xy)]
    ax.scatter([x for x, _ in xy], [y for _, y in xy], color="#4c72b0", zorder=2)
    for cell, (x, y) in zip(cells, xy):
        ax.annotate(f"{cell.checkpoint} {cell.quant}", (x, y), fontsize="x-small", xytext=(3, 3),
                    textcoords="offset points")
        if cell.id == chosen:
            ax.scatter([x], [y], s=160, facecolors="none", edgecolors="#c44e52", linewidths=2, zorder=3,
                       label="chosen")
    ax.step([x for x, _ in front], [y for _, y in front], where="post", color="#dd8452", label="Pareto front")
    ax.set_xlabel(FIGURES[SPEED].label)
    ax.set_ylabel(f"{FIGURES[loss].label} (lower is better)")
    ax.set_title(target)
    ax.legend(fontsize="small")
    return front


def _save(plt, fig, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_plots(out: Path, report: SweepReport) -> list[Path]:
    """The PNGs written into `out`; none when no cell has both a speed and a quality figure."""
    loss = _loss(report.cells)
    targets = [p.name for p in report.plan.targets]
    by_target = {t: _points([c for c in report.cells if c.target == t], loss) for t in targets} if loss else {}
    by_target = {t: cells for t, cells in by_target.items() if cells}
    if not by_target:
        return []
    plt = pyplot()
    chosen = {c.target: c.cell for c in report.choices}
    fig, axes = plt.subplots(1, len(by_target), figsize=(5.5 * len(by_target), 4.5), squeeze=False)
    fronts = {t: _panel(ax, cells, loss, chosen.get(t), t) for ax, (t, cells) in zip(axes[0], by_target.items())}
    fig.suptitle("quality against decode speed, per target", fontsize="medium")
    fig.tight_layout()
    written = [_save(plt, fig, out / PER_TARGET)]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for target, front in fronts.items():
        ax.step([x for x, _ in front], [y for _, y in front], where="post", marker="o", label=target)
    ax.set_xlabel(FIGURES[SPEED].label)
    ax.set_ylabel(f"{FIGURES[loss].label} (lower is better)")
    ax.set_title("Pareto fronts: no cell off a front is both faster and closer")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return written + [_save(plt, fig, out / FRONTS)]
