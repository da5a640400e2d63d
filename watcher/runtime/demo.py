"""`demo`: the simulator and the daemon in one process, a scripted upgrade end to end.

Intervals and time rules are scaled down so a whole upgrade plays in under a minute; every
notification is printed as it is delivered (console://) and, with --notify, also sent to a
real service. The daemon runs on the simulator's clock, so the scenario's time rules
(pre-check expiry, stalls) play at the chosen speed too. The status page is served on a
free loopback port while the demo runs. State lives in a temporary directory that is
removed afterwards.

The demo ends when the scenario's timeline is done, the daemon has polled the final state
and the outbox is drained: not when no watch remains, because a failed (Pending) workflow
is watched for ever, as it would be in production.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Sequence

import click

from watcher.config import settings_from_mapping
from watcher.core.errors import ConfigError
from watcher.logs import configure_logging
from watcher.runtime.app import App
from watcher.simulator import Simulator, start_simulator

# Polls (real seconds) after the timeline ends before the demo may stop: the longest demo
# poll interval is 2 s, so two of them guarantee a poll that saw the final state.
SETTLE_S = 4.5

NEXT_STEPS = """\
Next steps:
  cce-upgrade-watcher simulate --scenario {scenario}     # keep a simulator running to explore
  cp config/watcher.example.toml config.toml             # then edit targets and notify URLs
  cce-upgrade-watcher config validate --config config.toml [--online]
  cce-upgrade-watcher routes test --config config.toml --kind task.failed --severity failure \\
      --target <name>                                    # which URLs would get an event
  cce-upgrade-watcher notify-test --config config.toml   # send a sample through the routes
  cce-upgrade-watcher check --config config.toml         # one poll of every target
  cce-upgrade-watcher run --config config.toml           # the daemon"""


def free_loopback_port() -> int:
    """A port that was free a moment ago (the demo is a local tool; the race is harmless)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_settings(
    sim_url: str,
    targets: list[dict[str, str]],
    access_key: str,
    secret_key: str,
    state_dir: str,
    extra_urls: Sequence[str],
    *,
    http_port: int | None = None,
) -> dict[str, object]:
    """The demo's configuration, as the TOML shape."""
    return {
        "state_dir": state_dir,
        "cloud": {"cce_endpoint": sim_url, "iam_endpoint": sim_url, "timeout_s": 5},
        "credentials": {"kind": "aksk", "access_key": access_key, "secret_key": secret_key},
        "targets": [
            {
                "name": t["name"],
                "kind": "workflow",
                "region": t["region"],
                "project_id": t["project_id"],
                "cluster_id": t["cluster_id"],
                "workflow_id": t["workflow_id"],
                "api": t["api"],
                **({"display_name": t["cluster_name"]} if t.get("cluster_name") else {}),
                "labels": {"env": "demo"},
            }
            for t in targets
        ],
        "polling": {
            "active_s": 1,
            "idle_s": 2,
            "failed_s": 2,
            "discovery_s": 5,
            "requests_per_second": 50,
            "burst": 50,
            "max_backoff_s": 5,
        },
        "policy": {"precheck_leads": ["30s", "10s"], "repeat_interval": "1h", "late_after": "30s"},
        "notify": {"urls": ["console://", *extra_urls], "retry_base_s": 1, "retry_cap_s": 5},
        "http": (
            {"enabled": True, "listen": f"127.0.0.1:{http_port}"}
            if http_port
            else {"enabled": False}
        ),
        "logging": {"level": "warning", "format": "console"},
    }


async def run_demo(
    scenario: str,
    extra_urls: Sequence[str],
    *,
    speed: float = 1.0,
    timeout_s: float = 90.0,
    http_port: int | None = None,
) -> int:
    """Play ``scenario``; 0 when it ran to its end, 1 on timeout, 2 on a bad scenario."""
    configure_logging("warning", "console")
    try:
        async with start_simulator(scenarios=[scenario], speed=speed, autoplay=True) as sim:
            with tempfile.TemporaryDirectory(prefix="cce-watcher-demo-") as state_dir:
                acc = sim.account
                port = http_port if http_port is not None else free_loopback_port()
                settings = settings_from_mapping(
                    demo_settings(
                        sim.url,
                        sim.targets(),
                        acc.access_key,
                        acc.secret_key,
                        state_dir,
                        extra_urls,
                        http_port=port,
                    )
                )
                click.echo(f"CCE simulator on {sim.url}, scenario {scenario!r} at speed {speed}")
                daemon = App(settings, clock=sim.clock)
                code = await _play(daemon, sim, timeout_s)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, OSError) as exc:
        click.echo(f"demo: {exc}", err=True)
        return 2
    if code == 0:
        click.echo("\n" + NEXT_STEPS.format(scenario=scenario))
    return code


def timeline_done(sim: Simulator) -> bool:
    """Every workflow of the simulator has played its last scripted step."""
    return all(wf["next_step_at"] is None for wf in sim.state()["workflows"])


async def _play(daemon: App, sim: Simulator, timeout_s: float) -> int:
    started = time.monotonic()
    await daemon.start()
    try:
        if daemon.http is not None:
            click.echo(f"Status page: {daemon.http.url}/ (open it while the demo runs)")
        click.echo("Each notification is printed below as it is delivered.\n")
        done_at: float | None = None
        while time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.5)
            if done_at is None:
                if timeline_done(sim):
                    done_at = time.monotonic()
                continue
            if time.monotonic() - done_at < SETTLE_S:
                continue
            stats = await daemon.store.outbox_stats(daemon.clock.now())
            if stats.pending == 0:
                click.echo(f"\nScenario finished in {time.monotonic() - started:.0f} s.")
                return 0
        click.echo(
            f"\ndemo: timed out after {timeout_s:g} s before the scenario finished"
            " (try a higher --timeout or --speed)",
            err=True,
        )
        return 1
    finally:
        await daemon.stop(grace_s=4)
