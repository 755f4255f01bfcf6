from __future__ import annotations

from typing import Iterable, Sequence

import click


def print_rows(header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> None:
    """Left-aligned columns, widths from the content."""
    table = [list(map(str, r)) for r in rows]
    if header:
        table.insert(0, list(header))
    if not table:
        return
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(max(map(len, table)))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
