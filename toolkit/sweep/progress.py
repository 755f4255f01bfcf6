"""Progress bars: one for the sweep (cells), one per cell in flight (its steps); hidden off a terminal."""

from __future__ import annotations

from tqdm import tqdm


class Progress:
    def __init__(self, cells: int, steps_per_cell: int, show: bool = True):
        self._show = None if show else True  # tqdm's disable: None hides the bars when stderr is not a terminal
        self._steps = steps_per_cell
        self._sweep = tqdm(total=cells, desc="sweep", unit="cell", disable=self._show)
        self._cells: dict[str, tqdm] = {}

    def step(self, cell: str, label: str) -> None:
        """`cell` finished a step named `label`."""
        if cell not in self._cells:
            self._cells[cell] = tqdm(total=self._steps, desc=cell, unit="step", leave=False, disable=self._show)
        bar = self._cells[cell]
        bar.set_postfix_str(label)
        bar.update()

    def cell_done(self, cell: str) -> None:
        bar = self._cells.pop(cell, None)
        if bar is not None:
            bar.close()
        self._sweep.update()

    def close(self) -> None:
        for bar in self._cells.values():
            bar.close()
        self._sweep.close()
