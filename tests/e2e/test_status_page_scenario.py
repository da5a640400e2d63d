"""The status page of the real daemon in headless Chromium while clean_upgrade plays.

The daemon runs as a subprocess against a stepped simulator; the page's graph nodes
(data-task-type/data-status) must match /api/v1/workflows, follow each step live, and the
final state is saved to tests/http/artifacts/status_scenario.png (gitignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.ops_support import (
    TOKEN,
    DaemonFactory,
    daemon_config,
    eventually,
    free_port,
    wait_healthy,
    workflows,
)
from tests.http.test_status_page_browser import ARTIFACTS, browser
from watcher.simulator import Simulator, start_simulator

pytestmark = pytest.mark.timeout(60)

__all__ = ["browser"]  # the fixture, with its launch and skip logic, reused as is


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as simulator:
        yield simulator


async def page_nodes(page: Any, wf_id: str) -> dict[str, str]:
    nodes = page.locator(f'.wf[data-workflow-id="{wf_id}"] .node')
    pairs = await nodes.evaluate_all("ns => ns.map(n => [n.dataset.taskType, n.dataset.status])")
    return {task: status for task, status in pairs}


async def test_status_page_follows_clean_upgrade_live(
    browser: Any,  # the fixture imported from test_status_page_browser
    daemons: DaemonFactory,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    config = daemon_config(sim, state_dir=tmp_path / "state", port=free_port(), token=TOKEN)
    daemon = daemons.spawn(config)
    [target] = sim.targets()
    wf_id = target["workflow_id"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def api_nodes() -> dict[str, str]:
            for wf in await workflows(session, daemon):
                if wf["workflow_id"] == wf_id:
                    return {p["task_type"]: p["status"] or "Init" for p in wf["points"]}
            return {}

        await wait_healthy(session, daemon)
        try:
            initial = await eventually(api_nodes, timeout=10)
        except AssertionError as exc:
            listed = await workflows(session, daemon)
            raise AssertionError(f"{exc}\nlisted: {listed}\n{daemon.log_text()[-4000:]}") from None

        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{daemon.url}/?token={TOKEN}")
        await page.locator(f'.wf[data-workflow-id="{wf_id}"]').wait_for(timeout=10_000)
        await page.wait_for_selector('#conn[data-state="live"]', timeout=10_000)
        assert await page_nodes(page, wf_id) == initial
        order = await page.locator(f'.wf[data-workflow-id="{wf_id}"] .node').evaluate_all(
            "ns => ns.map(n => n.dataset.taskType)"
        )
        assert order[:4] == ["PreCheck", "Snapshot", "Cluster", "PostCheck"], order

        # Each step: the API sees it, and the page follows without a reload.
        seen: list[dict[str, str]] = [initial]
        for _ in range(9):
            step = await sim.step()
            [change] = [c for c in step["changes"] if c.get("point")] or [None]

            async def api_moved() -> dict[str, str] | None:
                now = await api_nodes()
                return now if now != seen[-1] else None

            expected = await eventually(api_moved, timeout=8)
            if change is not None:
                assert expected[change["point"]] == change["status"], (change, expected)
            seen.append(expected)

            async def page_matches(expected: dict[str, str] = expected) -> bool:
                # The expected state, not a fresh API read: a finished workflow leaves the
                # API one poll after its last change, while the page keeps showing it.
                return await page_nodes(page, wf_id) == expected

            await eventually(page_matches, timeout=8)
        final = await page_nodes(page, wf_id)
        assert {final[t] for t in ("PreCheck", "Snapshot", "Cluster", "PostCheck")} == {
            "Success"
        }, final
        colours = await page.locator(f'.wf[data-workflow-id="{wf_id}"] .node').evaluate_all(
            "ns => ns.map(n => n.dataset.color)"
        )
        assert set(colours) == {"success"}, colours
        await page.wait_for_function(
            "() => document.querySelectorAll('#events li').length >= 5", timeout=8000
        )
        kinds = await page.locator("#events li").evaluate_all("ls => ls.map(l => l.dataset.kind)")
        assert kinds[0] == "workflow.succeeded", kinds
        card = page.locator(f'.wf[data-workflow-id="{wf_id}"]')
        assert await card.locator(".phase").text_content() == "Succeeded"  # for people
        assert await card.get_attribute("data-phase") == "Success"  # the raw phase stays
        href = await card.locator("a.console").get_attribute("href")
        assert href is not None and href.startswith("https://console-intl.huaweicloud.com/")

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status_scenario.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert errors == []
