"""The ``config`` command group (validate, show) and ``load_or_exit`` for other commands.

A bad configuration is exit status 2 with one ``config error: <key>: <problem> (env ...)``
line per problem on stderr (SPEC.md 7); ``validate`` also renders every template against sample
events of every kind. Nothing printed here ever contains a secret: problems
are built without input values and ``show`` goes through ``watcher.config.masking``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import NoReturn

import click

from watcher.config import DEFAULT_CONFIG_PATH, Settings, load_settings, render_masked
from watcher.config import lint as config_lint
from watcher.config.loader import resolve_config_path
from watcher.config.sources import CONFIG_ENV
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


def load_local_or_exit(path: str | Path | None) -> Settings:
    """Settings for a command that never calls the cloud (silence, ack, healthcheck).

    An operator's shell usually lacks the cloud secret (systemd hands it to the service
    only), so missing or incomplete ``[credentials]`` is not an error here; every other
    problem still is.
    """
    try:
        return load_settings(path)
    except ConfigError as exc:
        if any(not p.startswith("credentials.") for p in exc.problems):
            _fail(exc.problems)
    try:
        return load_settings(path, credentials={"kind": "metadata"})
    except ConfigError as exc:
        _fail(exc.problems)


@click.group("config")
def config() -> None:
    """Check or print the configuration."""


def say_missing_config_file(path: Path | None) -> None:
    """Say so when no config file is read (only the default may be missing)."""
    resolved, required = resolve_config_path(path, os.environ, DEFAULT_CONFIG_PATH)
    if not required and resolved is not None and not resolved.exists():
        click.echo(
            f"config note: no config file found (not given with --config or ${CONFIG_ENV},"
            f" and {resolved} does not exist): only environment variables, secret files"
            " and defaults are used",
            err=True,
        )


def lint_or_exit(settings: Settings) -> None:
    """Print the lint findings (watcher.config.lint); exit 2 when any is an error."""
    findings = config_lint.lint(settings)
    for line in config_lint.lines(findings, "warning"):
        click.echo(f"config warning: {line}", err=True)
    errors = config_lint.lines(findings, "error")
    if errors:
        _fail(errors)


@config.command("validate")
@config_option
@click.option(
    "--online",
    is_flag=True,
    help="Also make one signed API call per target and, with PostgreSQL, connect to the store.",
)
def validate(config_path: Path | None, online: bool) -> None:
    """Check the configuration; exit 2 with one line per problem if it is invalid.

    Beyond what `run` rejects it catches the usual mistakes (region typos, malformed ids,
    routes that reach no URL, placeholders left from the example, ...), each with the key,
    its environment variable and a suggestion. --online exits 2 if any target fails.
    """
    say_missing_config_file(config_path)
    settings = load_or_exit(config_path, require_targets=True)
    try:  # the schema only checks that a URL has a scheme; ask apprise itself
        notify_urls(settings)
        renderer = make_renderer(settings)
    except ConfigError as exc:
        # Say why too (a mailtos:// URL without a login is one apprise refuses outright).
        found = config_lint.lines(config_lint.lint(settings), "error")
        _fail(found + [config_lint.with_env(p) for p in exc.problems if p not in found])
    # A template that parses can still fail on real events: render each one now.
    if broken := renderer.check():
        _fail(broken)
    lint_or_exit(settings)
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
    if online:
        from watcher.core.ports import SystemClock  # noqa: PLC0415
        from watcher.runtime.online import check_targets  # noqa: PLC0415  (aiohttp)
        from watcher.store import check_store  # noqa: PLC0415  (psycopg)

        results = asyncio.run(check_targets(settings))
        for result in results:
            click.echo(result.line())
        store_problems = asyncio.run(check_store(settings, SystemClock()))
        for problem in store_problems:
            click.echo(f"state store: {problem}")
        if settings.state.backend == "postgres" and not store_problems:
            click.echo("state store: PostgreSQL answers and its schema is current")
        if store_problems or not all(r.ok for r in results):
            raise SystemExit(EXIT_CONFIG)


@config.command("show")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(config_path: Path | None, as_json: bool) -> None:
    """Print the effective configuration with every secret masked."""
    settings = load_or_exit(config_path)
    click.echo(render_masked(settings, "json" if as_json else "toml"), nl=False)
