from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import QwdeployError
from ..registry import LazyRegistry

# Each command group lives in its own module and is imported only when invoked.
COMMANDS = LazyRegistry[click.Command](
    "command",
    {
        "inspect": "qwdeploy.toolkit.cli.inspect:inspect",
        "export": "qwdeploy.toolkit.cli.export:export",
        "profiles": "qwdeploy.toolkit.cli.profiles:profiles",
        "demo-checkpoint": "qwdeploy.toolkit.cli.demo:demo_checkpoint",
        "backends": "qwdeploy.toolkit.cli.backends:backends",
        "kernels": "qwdeploy.toolkit.cli.kernels:kernels",
        "profile": "qwdeploy.toolkit.cli.profile:profile",
    },
)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS.names())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return COMMANDS.get(name) if name in COMMANDS.names() else None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except QwdeployError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was left behind", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="qwdeploy")
def cli() -> None:
    """Turn Qwen checkpoints into fast, verified artifacts for CPU, CUDA, Ascend and Arm boards."""


def main() -> None:
    cli()
