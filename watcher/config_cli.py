"""The ``config`` command group (validate, show) and ``load_or_exit`` for other commands.

A bad configuration is exit status 2 with one ``config error: <key>: <problem> (env ...)``
line per problem on stderr (SPEC.md 7); ``validate`` also renders every template against sample
events of every kind. Nothing printed here ever contains a secret: problems
are built without input values and ``show`` goes through ``watcher.config.masking``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from watcher.config import Settings, load_settings, render_masked
from watcher.core.errors import ConfigError
from watcher.runtime.wiring import make_renderer, notify_urls

EXIT_CONFIG = 2

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML file (default: $WATCHER_CONFIG, else /etc/cce-upgrade-watcher/config.toml).",
)


def _fail(problems: list[str]) -> NoReturn:
    for line in problems:
        click.echo(f"config error: {line}", err=True)
    raise SystemExit(EXIT_CONFIG)


def load_or_exit(path: str | Path | None, *, require_targets: bool = False) -> Settings:
    """Load the settings, or print each problem to stderr and exit with status 2.

    ``require_targets=True`` (for ``run`` and ``check``) also fails when no target is given.
    """
    try:
        return load_settings(path, require_targets=require_targets)
    except ConfigError as exc:
        problems = exc.problems
    _fail(problems)


@click.group("config")
def config() -> None:
    """Check or print the configuration."""


@config.command("validate")
@config_option
def validate(config_path: Path | None) -> None:
    """Check the configuration; exit 2 with one line per problem if it is invalid."""
    settings = load_or_exit(config_path, require_targets=True)
    try:  # the schema only checks that a URL has a scheme; ask apprise itself
        notify_urls(settings)
        renderer = make_renderer(settings)
    except ConfigError as exc:
        _fail(exc.problems)
    # A template that parses can still fail on real events: render each one now.
    if broken := renderer.check():
        _fail(broken)
    urls = len(settings.notify.urls)
    files = len(settings.notify.apprise_config)
    message = (
        f"config OK: {len(settings.targets)} target{'s' if len(settings.targets) != 1 else ''},"
        f" {urls} notification URL{'s' if urls != 1 else ''}"
    )
    if files:
        message += f", {files} apprise config file{'s' if files != 1 else ''}"
    click.echo(message)
    if not settings.notify.has_destinations:
        click.echo("config warning: no notification URLs: events are stored but not sent", err=True)


@config.command("show")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(config_path: Path | None, as_json: bool) -> None:
    """Print the effective configuration with every secret masked."""
    settings = load_or_exit(config_path)
    click.echo(render_masked(settings, "json" if as_json else "toml"), nl=False)
