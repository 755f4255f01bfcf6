from __future__ import annotations

import signal
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
        "package": "qwdeploy.toolkit.cli.package:package",
        "verify": "qwdeploy.toolkit.cli.package:verify",
        "run": "qwdeploy.toolkit.cli.run:run",
        "eval": "qwdeploy.toolkit.cli.eval:eval_command",
        "sweep": "qwdeploy.toolkit.cli.sweep:sweep",
    },
)


# A closed terminal, `timeout` or a cancelled job: unwind like Ctrl-C so every partial output is removed.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """Raised in the main thread by a terminating signal; BaseException so no `except Exception` eats it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    for other in TERMINATING:  # a second signal must not interrupt the cleanup the first one started
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS.names())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return COMMANDS.get(name) if name in COMMANDS.names() else None

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Click's own usage errors as one line too (click prints usage, a hint and the error on three)."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "qwdeploy"
            click.secho(f"error: {exc.format_message()} (see '{command} --help')", fg="red", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted; nothing was left behind", err=True)
            sys.exit(128 + signal.SIGINT)
        except click.ClickException as exc:
            click.secho(f"error: {exc.format_message()}", fg="red", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except QwdeployError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was left behind", err=True)
            sys.exit(128 + signal.SIGINT)
        except Terminated as exc:
            click.echo(f"stopped by {signal.Signals(exc.signum).name}; nothing was left behind", err=True)
            sys.exit(128 + exc.signum)


@click.group("qwdeploy", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="qwdeploy")
def cli() -> None:
    """Turn Qwen checkpoints into fast, verified artifacts for CPU, CUDA, Ascend and Arm boards."""


def main() -> None:
    for signum in TERMINATING:
        signal.signal(signum, _terminate)
    cli()
