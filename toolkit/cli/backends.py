from __future__ import annotations

import click

from .table import print_rows


@click.command()
def backends() -> None:
    """The device backends `export --target` can hand the portable graph to, whether they run here,
    and the -O options each takes."""
    from ...backends import BACKENDS
    from ...backends.base import option_fields

    rows, options = [], []
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)
        ok, reason = backend.availability()
        rows.append((name, "yes" if ok else "no", ", ".join(backend.quants), reason))
        for key, (option, default) in option_fields(backend.defaults).items():
            shown = ",".join(default) if isinstance(default, tuple) else str(default).lower()
            options.append((name, key, shown or "-", "/".join(option.quants) or "all", option.help))
    print_rows(("name", "available", "quant", "details"), rows)
    click.echo("")
    print_rows(("backend", "-O option", "default", "quant", "meaning"), options)
