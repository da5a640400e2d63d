"""`cce-upgrade-watcher routes test`: which routes match an event and which URLs get it.

Like `amtool config routes test`: nothing is sent, the production routing decides.
Exit 0 when some URL would receive the event, 1 when none would, 2 on a bad configuration.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from watcher.config_cli import _fail, config_option, load_or_exit
from watcher.core.errors import ConfigError


def parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--label")
        labels[key] = value
    return labels


F = TypeVar("F", bound=Callable[..., Any])


def event_options(func: F) -> F:
    """--kind, --severity, --target and --label, shared with notify-test."""
    from watcher.runtime.route_check import KINDS, SEVERITIES  # noqa: PLC0415

    for option in reversed(
        [
            click.option("--kind", default=None, help=f"Event kind, e.g. {KINDS[0]}."),
            click.option("--severity", type=click.Choice(SEVERITIES), default=None),
            click.option("--target", default=None, help="Target name (configured or not)."),
            click.option("--label", "labels", multiple=True, help="k=v label on the target."),
        ]
    ):
        func = option(func)
    return func


@click.group("routes")
def routes() -> None:
    """Inspect notification routing."""


@routes.command("test")
@config_option
@event_options
def test(
    config_path: Path | None,
    kind: str | None,
    severity: str | None,
    target: str | None,
    labels: tuple[str, ...],
) -> None:
    """Print which routes match an event and which URLs would receive it (nothing is sent)."""
    from watcher.runtime.route_check import (  # noqa: PLC0415
        explain,
        routed_event,
        stored_silences,
    )
    from watcher.runtime.wiring import notify_plan  # noqa: PLC0415

    settings = load_or_exit(config_path)
    try:
        plan = notify_plan(settings)
        event = routed_event(
            settings, kind=kind, severity=severity, target=target, labels=parse_labels(labels)
        )
    except ConfigError as exc:
        _fail(exc.problems)
    names = [t.name for t in settings.targets]
    if target and names and target not in names:
        close = difflib.get_close_matches(target, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        click.echo(f"warning: no configured target is named {target!r}{hint}", err=True)
    lines, receivers = explain(settings, plan, event, stored_silences(settings))
    click.echo("\n".join(lines))
    raise SystemExit(0 if receivers else 1)
