from __future__ import annotations

import click

from ..profiles import load_profile, profile_names
from .table import print_rows


@click.group()
def profiles() -> None:
    """Device profiles: the targets qwdeploy knows."""


@profiles.command("list")
def list_profiles() -> None:
    """One line per built-in profile."""
    rows = []
    for name in profile_names():
        p = load_profile(name)
        accel = p.accelerator.soc_version or p.accelerator.cuda_arch or "-"
        rows.append((name, p.cpu.arch, accel, f"{p.memory.budget_gib:g} GiB", f"{p.deploy.format}/{p.deploy.backend}",
                     p.description))
    print_rows(("name", "cpu", "accelerator", "budget", "format/backend", "description"), rows)


@profiles.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Every setting of one profile (a built-in NAME or a path to a .toml file)."""
    p = load_profile(name)
    click.echo(f"{p.name}: {p.description}")
    for section in ("memory", "cpu", "accelerator", "deploy"):
        click.echo(f"[{section}]")
        values = vars(getattr(p, section))
        print_rows(None, [(f"  {k}", ", ".join(v) if isinstance(v, list) else str(v)) for k, v in values.items()
                          if v not in ("", None)])
