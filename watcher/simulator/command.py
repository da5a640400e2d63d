"""``cce-upgrade-watcher simulate``: run the simulator alone until SIGINT/SIGTERM.

For people testing their own routes and dashboards: prints the URL, the account and a
config snippet to paste, then logs every timeline change as it happens. The lead
registers ``simulate`` in watcher/cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence

import click

from watcher.simulator.account import DEFAULT_ACCOUNT
from watcher.simulator.scenario import ScenarioError, list_scenarios
from watcher.simulator.server import Simulator

TICK_SECONDS = 0.5


def config_snippet(sim: Simulator) -> str:
    """A TOML fragment pointing the daemon at this simulator, one target per workflow."""
    acc = sim.account
    lines = [
        "[cloud]",
        f'cce_endpoint = "{sim.url}"',
        f'iam_endpoint = "{sim.url}"',
        "",
        "[credentials]",
        'kind = "aksk"',
        f'access_key = "{acc.access_key}"',
        f'secret_key = "{acc.secret_key}"',
    ]
    for target in sim.targets():
        lines += [
            "",
            "[[targets]]",
            f'name = "{target["name"]}"',
            f'region = "{target["region"]}"',
            f'project_id = "{target["project_id"]}"',
            f'cluster_id = "{target["cluster_id"]}"',
            f'workflow_id = "{target["workflow_id"]}"',
            f'api = "{target["api"]}"',
        ]
    return "\n".join(lines)


def _banner(sim: Simulator) -> str:
    acc = sim.account
    return "\n".join(
        [
            f"CCE simulator listening on {sim.url}  (control API: {sim.url}/_sim/state)",
            f"region={acc.region} project_id={acc.project_id}",
            f"AK={acc.access_key} SK={acc.secret_key}",
            f"IAM user={acc.user} password={acc.password} domain={acc.domain}",
            f"speed={sim.clock.speed} autoplay={sim.clock.autoplay}",
            "",
            "# --- config snippet ---",
            config_snippet(sim),
            "# ----------------------",
        ]
    )


async def serve(
    *, host: str, port: int, scenarios: Sequence[str], speed: float, autoplay: bool
) -> None:
    """Serve until SIGINT or SIGTERM, echoing timeline changes."""
    sim = Simulator(scenarios=scenarios, speed=speed, autoplay=autoplay, account=DEFAULT_ACCOUNT)
    await sim.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo(_banner(sim))
    try:
        while not stop.is_set():
            for change in sim.world.catch_up():
                click.echo(_describe(change))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sim.stop()
        click.echo("simulator stopped")


def _describe(change: dict[str, object]) -> str:
    parts = [f"t={change['at']:>7}s", f"workflow={change['workflow']}"]
    if "point" in change:
        parts.append(f"{change['point']}={change['status']}")
    if "action" in change:
        parts.append(f"action={change['action']}")
    parts.append(f"phase={change['phase']}")
    if change.get("note"):
        parts.append(f"({change['note']})")
    return " ".join(parts)


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8700, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    help="Scenario name or TOML path; repeat for several (default: every scenario).",
)
@click.option(
    "--speed", default=1.0, show_default=True, type=float, help="Scenario seconds per real second."
)
@click.option("--no-autoplay", is_flag=True, help="Move time only through POST /_sim/step|advance.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
def simulate(
    host: str,
    port: int,
    scenarios: tuple[str, ...],
    speed: float,
    no_autoplay: bool,
    list_only: bool,
) -> None:
    """Run a local simulator of the CCE, IAM and metadata APIs."""
    if list_only:
        for name, description in list_scenarios().items():
            click.echo(f"{name:<24} {description}")
        return
    if speed <= 0:
        raise click.BadParameter("must be positive", param_hint="--speed")
    chosen = list(scenarios) or list(list_scenarios())
    try:
        asyncio.run(
            serve(host=host, port=port, scenarios=chosen, speed=speed, autoplay=not no_autoplay)
        )
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
