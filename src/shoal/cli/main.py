"""Entry point of the ``shoal`` command; subcommands load lazily so --help is instant."""

from __future__ import annotations

import importlib
import sys

import click

from shoal import __version__

#: command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "proxy": "shoal.cli.proxy:proxy",
}

#: `shoal viz X` is `shoal X`, for people used to `linkerd viz X`.
VIZ_ALIASES = ("stat", "top", "tap", "edges", "routes", "dashboard")


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, _, attr = COMMANDS[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """shoal: see the traffic between your services, then make it reliable and secure."""


@cli.group(cls=LazyGroup, name="viz")
def viz() -> None:
    """Aliases: `shoal viz stat` is `shoal stat` (as `linkerd viz stat`)."""


def _viz_commands(ctx: click.Context) -> list[str]:
    return [c for c in VIZ_ALIASES if c in COMMANDS]


viz.list_commands = _viz_commands  # type: ignore[method-assign]


def main() -> None:
    sys.exit(cli.main(prog_name="shoal", standalone_mode=True))
