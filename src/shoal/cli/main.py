"""Entry point of the ``shoal`` command; subcommands load lazily so --help is instant.

A command ``shoal foo-bar`` lives in ``shoal/cli/foo_bar.py`` as a click command
named ``command``. Modules starting with ``_`` and ``main`` are not commands.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from shoal import __version__

#: `shoal viz X` is `shoal X`, for people used to `linkerd viz X`.
VIZ_ALIASES = ("stat", "top", "tap", "edges", "routes", "dashboard")
_NOT_COMMANDS = {"main", "render", "client"}


def _command_names() -> list[str]:
    import shoal.cli as pkg

    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(pkg.__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_COMMANDS)


def _load(name: str) -> click.Command | None:
    if name not in _command_names():
        return None
    module = importlib.import_module(f"shoal.cli.{name.replace('-', '_')}")
    return getattr(module, "command", None)


class LazyGroup(click.Group):
    only: tuple[str, ...] | None = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = _command_names()
        if self.only is not None:
            names = [n for n in names if n in self.only]
        return sorted(set(names) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if self.only is not None and name not in self.only:
            return None
        return super().get_command(ctx, name) or _load(name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shoal")
def cli() -> None:
    """shoal: see the traffic between your services, then make it reliable and secure."""


class VizGroup(LazyGroup):
    only = VIZ_ALIASES


@cli.group(cls=VizGroup, name="viz")
def viz() -> None:
    """Aliases: `shoal viz stat` is `shoal stat` (as `linkerd viz stat`)."""


def main() -> None:
    sys.exit(cli.main(prog_name="shoal", standalone_mode=True))
