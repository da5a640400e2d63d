"""Every metric the alerts and the Grafana dashboard read is exported by a real daemon.

`cce-upgrade-watcher run` polls the simulator; its /metrics page is scraped once the first
polls are done and compared with the metric names in deploy/prometheus/*.rules.yml and
deploy/grafana/*.json. A renamed metric breaks this test, not a silent alert in production.
"""

from __future__ import annotations

import platform
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import watcher
from tests.e2e.ops_support import (
    DaemonFactory,
    DaemonProcess,
    daemon_config,
    eventually,
    free_port,
    wait_healthy,
)
from tests.ops import promql
from tests.ops.test_grafana_dashboard import queries as dashboard_queries
from watcher.simulator import Simulator, start_simulator

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "cce-upgrade-watcher.rules.yml"
# Series Prometheus itself attaches to every scrape, not the daemon.
SCRAPE_SERIES = {"up"}


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as simulator:
        yield simulator


async def _scrape_after_first_polls(daemon: DaemonProcess, target: str) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await wait_healthy(session, daemon)

        async def polled() -> str | None:
            async with session.get(f"{daemon.url}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            return text if f'cce_watcher_target_up{{target="{target}"}} 1.0' in text else None

        scraped: str = await eventually(polled, timeout=20)
        return scraped


def _rule_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in promql.metric_names(expr)}


def _dashboard_names() -> set[str]:
    return {name for query in dashboard_queries() for name in promql.grafana_query_names(query)}


async def test_alerts_and_dashboard_read_only_metrics_the_daemon_exports(
    sim: Simulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    (target,) = [t["name"] for t in sim.targets()]
    daemon = daemons.spawn(daemon_config(sim, state_dir=tmp_path / "state", port=free_port()))
    text = await _scrape_after_first_polls(daemon, target)
    exported = promql.exported_names(text)

    unknown_in_rules = _rule_names() - SCRAPE_SERIES - exported
    assert unknown_in_rules == set(), "the alerts read metrics the daemon does not export"
    unknown_in_dashboard = _dashboard_names() - SCRAPE_SERIES - exported
    assert unknown_in_dashboard == set(), "the dashboard reads metrics the daemon does not export"
    # The helper is not vacuous: both files read many of the daemon's metrics.
    assert len(_rule_names() & exported) >= 7
    assert len(_dashboard_names() & exported) >= 15

    # Every metric family the daemon exports has a place on the dashboard (the text format
    # lists each counter's and histogram's *_created timestamps as families of their own).
    families = {
        f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    shown = {
        family
        for family in families
        if any(n == family or n.startswith(f"{family}_") for n in _dashboard_names())
    }
    assert families - shown == set()


async def test_the_new_gauges_have_samples_in_a_real_run(
    sim: Simulator, daemons: DaemonFactory, tmp_path: Path
) -> None:
    (target,) = [t["name"] for t in sim.targets()]
    daemon = daemons.spawn(daemon_config(sim, state_dir=tmp_path / "state", port=free_port()))
    text = await _scrape_after_first_polls(daemon, target)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    build = (
        "cce_watcher_build_info",
        (("python", platform.python_version()), ("version", watcher.__version__)),
    )
    assert samples[build] == 1
    last = samples[("cce_watcher_target_last_success_timestamp_seconds", (("target", target),))]
    assert last > 1_600_000_000  # Unix time, comparable with Prometheus's time()
    assert ("cce_watcher_polls_total", (("result", "auth"), ("target", target))) in samples
