"""`demo`: the simulator and the daemon in one process, a scripted upgrade end to end.

Intervals and time rules are scaled down so a whole upgrade plays in under a minute; every
notification is printed as it is delivered (console://) and, with --notify, also sent to a
real service. State lives in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence

import click

from watcher.config import settings_from_mapping
from watcher.core.errors import ConfigError
from watcher.logs import configure_logging
from watcher.runtime.daemon import Daemon
from watcher.simulator import start_simulator


def demo_settings(
    sim_url: str,
    targets: list[dict[str, str]],
    access_key: str,
    secret_key: str,
    state_dir: str,
    extra_urls: Sequence[str],
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
        "http": {"enabled": False},
        "logging": {"level": "warning", "format": "console"},
    }


async def run_demo(
    scenario: str, extra_urls: Sequence[str], *, speed: float = 1.0, timeout_s: float = 90.0
) -> int:
    configure_logging("warning", "console")
    try:
        async with start_simulator(scenarios=[scenario], speed=speed, autoplay=True) as sim:
            with tempfile.TemporaryDirectory(prefix="cce-watcher-demo-") as state_dir:
                acc = sim.account
                settings = settings_from_mapping(
                    demo_settings(
                        sim.url,
                        sim.targets(),
                        acc.access_key,
                        acc.secret_key,
                        state_dir,
                        extra_urls,
                    )
                )
                click.echo(f"CCE simulator on {sim.url}, scenario {scenario!r} at speed {speed}")
                click.echo("Each notification is printed below as it is delivered.\n")
                return await _play(Daemon(settings), timeout_s)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as exc:
        click.echo(f"demo: {exc}", err=True)
        return 2


async def _play(daemon: Daemon, timeout_s: float) -> int:
    started = time.monotonic()
    await daemon.start()
    try:
        while time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.5)
            stats = await daemon.store.outbox_stats(daemon.clock.now())
            if not daemon.watches and stats["pending"] == 0:
                click.echo(f"\nScenario finished in {time.monotonic() - started:.0f} s.")
                return 0
        click.echo("\ndemo: timed out before the scenario finished", err=True)
        return 1
    finally:
        await daemon.stop(grace_s=4)
