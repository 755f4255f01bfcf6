from __future__ import annotations

import click

from .table import print_rows


@click.command()
def backends() -> None:
    """The device backends `export --target` can hand the portable graph to, and whether they run here."""
    from ...backends import BACKENDS

    rows = []
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)
        ok, reason = backend.availability()
        rows.append((name, "yes" if ok else "no", ", ".join(backend.quants), reason))
    print_rows(("name", "available", "quant", "details"), rows)
