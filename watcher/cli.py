"""Command line: `run`, `check`, `demo`, `simulate`, `notify-test`, `events`, `config`, ...

Parses arguments, loads settings (a bad config exits 2 with one line per problem), sets up
logging, and hands over to the runtime. No logic of its own.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path

import click
import prometheus_client

from watcher import config_cli, healthcheck, ops_cli, routes_cli, state_cli, textsafe
from watcher.config import Settings, load_settings
from watcher.core.errors import ConfigError, WatcherError
from watcher.logs import configure_logging, register_secret, url_secrets
from watcher.runtime import lifecycle, oneshot
from watcher.runtime.app import App
from watcher.runtime.check_progress import CheckProgress
from watcher.runtime.demo import run_demo
from watcher.simulator.command import simulate


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value the logs must never show."""
    values = [
        settings.credentials.secret_key,
        settings.credentials.password,
        settings.credentials.security_token,
        settings.http.token,
        settings.heartbeat.url,
    ]
    secrets = [v.get_secret_value() for v in values if v is not None]
    for url in settings.notify.urls:
        secrets += url_secrets(url.url.get_secret_value())
    return secrets


def setup_logging(settings: Settings, level: str | None = None) -> None:
    configure_logging(
        level or settings.logging.level, settings.logging.format, settings_secrets(settings)
    )


@click.group()
@click.version_option(package_name="cce-upgrade-watcher")
def cli() -> None:
    """Watch Huawei Cloud CCE upgrade workflows and notify people in time to act."""


@cli.command()
@config_cli.config_option
def run(config_path: Path | None) -> None:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
    # No cyclic GC until the app has started (lifecycle.pause_gc): loading 100,000 targets
    # is part of start-up. serve() resumes it; a load that fails resumes it here.
    lifecycle.pause_gc()
    try:
        settings = config_cli.load_or_exit(config_path, require_targets=True)
        setup_logging(settings)
        # No *_created series: one per counter and histogram series, they doubled those at
        # scale (issue 12.3), and Prometheus sees a counter's start from its resets anyway.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        daemon = App(
            settings, reload_settings=lambda: load_settings(config_path, require_targets=True)
        )
    except BaseException:
        gc.enable()
        raise
    try:
        asyncio.run(daemon.run_forever())
    except WatcherError as exc:
        click.echo(f"error: {textsafe.inert(exc)}", err=True)
        sys.exit(2)
    lifecycle.exit_after_stop(0)  # stopped cleanly: skip the teardown (see its docstring)


@cli.command()
@config_cli.config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Give up after this many seconds in total (retries included).",
)
def check(config_path: Path | None, as_json: bool, timeout_s: float) -> None:
    """Poll every target once and print each workflow.

    Exit 0: fine or in progress; 1: a workflow failed (Pending) or a pre-check expired;
    2: configuration, credential or API error. A failed or slow attempt gets a line on
    stderr as it happens; a failed check ends with the host, attempts and time taken.
    """
    settings = config_cli.load_or_exit(config_path, require_targets=True)
    setup_logging(settings, "error")
    progress = CheckProgress(say=lambda line: click.echo(line, err=True))
    try:
        code, text = asyncio.run(
            oneshot.check(settings, as_json=as_json, timeout_s=timeout_s, progress=progress)
        )
    except WatcherError as exc:
        click.echo(f"error: {textsafe.inert(exc)}", err=True)
        sys.exit(2)
    click.echo(text)
    if code == 2 and progress.attempts:
        click.echo(progress.summary(), err=True)
    sys.exit(code)


@cli.command()
@config_cli.config_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=50, show_default=True, help="How many recent events.")
def events(config_path: Path | None, as_json: bool, limit: int) -> None:
    """Recent events and each delivery's state, from the state store."""
    settings = config_cli.load_or_exit(config_path)
    try:
        click.echo(asyncio.run(oneshot.events(settings, limit=limit, as_json=as_json)))
    except WatcherError as exc:
        click.echo(f"error: {textsafe.inert(exc)}", err=True)
        sys.exit(2)


@cli.command("notify-test")
@config_cli.config_option
@click.option(
    "--notify", "extra", multiple=True, help="Send to this apprise URL directly (no routes)."
)
@routes_cli.event_options
def notify_test(
    config_path: Path | None,
    extra: tuple[str, ...],
    kind: str | None,
    severity: str | None,
    target: str | None,
    labels: tuple[str, ...],
) -> None:
    """Send a sample event through the configured routes; print each URL's result.

    --kind/--severity/--target/--label shape the event, so real routes can be exercised;
    --notify URL sends to that URL only, bypassing routes.
    """
    from watcher.runtime.route_check import routed_event, stored_silences  # noqa: PLC0415

    settings = config_cli.load_or_exit(config_path)
    # Quiet unless the config asks for debug: then apprise's and urllib3's request lines
    # show (redacted) what went wrong with a destination.
    setup_logging(settings, "debug" if settings.logging.level == "debug" else "warning")
    for url in extra:  # secrets of --notify URLs are never in the config
        for secret in url_secrets(url):
            register_secret(secret)
    try:
        event = routed_event(
            settings,
            kind=kind,
            severity=severity,
            target=target,
            labels=routes_cli.parse_labels(labels),
        )
        stored = () if extra else tuple(stored_silences(settings))
        code, text = asyncio.run(oneshot.notify_test(settings, extra, event, stored))
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config error: {textsafe.inert(problem)}", err=True)
        sys.exit(2)
    click.echo(text)
    sys.exit(code)


@cli.command()
@click.option(
    "--scenario",
    default="clean_upgrade",
    show_default=True,
    help="Simulator scenario to play (see config/scenarios/).",
)
@click.option("--notify", "extra", multiple=True, help="Also send to this apprise URL.")
@click.option("--speed", default=1.0, show_default=True, help="Scenario seconds per second.")
@click.option("--timeout", default=120.0, show_default=True, help="Give up after seconds.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve the status page on this loopback port [default: a free one].",
)
def demo(
    scenario: str, extra: tuple[str, ...], speed: float, timeout: float, port: int | None
) -> None:
    """Run the simulator and the daemon together: a scripted upgrade, end to end.

    Ends when the scenario's timeline is done and every notification is delivered.
    """
    sys.exit(asyncio.run(run_demo(scenario, extra, speed=speed, timeout_s=timeout, http_port=port)))


cli.add_command(simulate)
cli.add_command(config_cli.config)
cli.add_command(healthcheck.healthcheck)
cli.add_command(ops_cli.silence)
cli.add_command(ops_cli.ack)
cli.add_command(routes_cli.routes)
cli.add_command(state_cli.state)


def main() -> None:
    cli()
