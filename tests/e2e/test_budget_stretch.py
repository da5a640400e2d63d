"""A demand beyond the request budget, end to end (issue 12.2): the real App polls the
simulator on loopback with a budget far below what its intervals ask for."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import WebhookReceiver, free_port, running
from tests.e2e.ops_support import eventually

pytestmark = pytest.mark.timeout(60)

SCENARIOS = ["clean_upgrade", "precheck_fails", "upgrade_paused", "cancel"] * 2


def tight_budget(port: int) -> Any:
    def configure(raw: dict[str, Any]) -> None:
        raw["polling"] = {
            "active_s": 0.5,
            "idle_s": 0.5,
            "failed_s": 0.5,
            "discovery_s": 0.5,
            "requests_per_second": 4,
            "burst": 2,
            "max_backoff_s": 2,
        }
        raw["http"] = {"enabled": True, "listen": f"127.0.0.1:{port}"}

    return configure


async def test_demand_beyond_the_budget_stretches_polls_warns_once_and_stays_ready(
    tmp_path: Path,
) -> None:
    port = free_port()
    hook = WebhookReceiver()
    async with running(tmp_path, SCENARIOS, webhook=hook, configure=tight_budget(port)) as h:
        app = h.daemon
        # 8 workflows polled every 0.5 s: ~16 req/s asked, 4 allowed
        budget = app.scheduler.budget
        assert budget is not None

        async def warned() -> bool:
            kinds = [s.event.kind for s in await h.stored()]
            return "watcher.budget_exceeded" in kinds

        await eventually(warned, timeout=15)
        stored = [s.event for s in await h.stored() if s.event.kind == "watcher.budget_exceeded"]
        assert len(stored) == 1
        details = dict(stored[0].details)
        assert details["allowed_rps"] == 4 and details["demanded_rps"] > 4
        assert "requests/s" in stored[0].message

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            idle = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith('cce_watcher_poll_stretch_factor{priority="idle"}')
            ]
            assert idle and idle[0] > 1.0

            async def ready() -> bool:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    return resp.status == 200

            await eventually(ready, timeout=10)

        # Polls are scheduled within the budget: the limiter's queue stays short (without
        # stretch and paced starts every job waits there), and the budget is used. Measured
        # after every job's second run: a first poll of a workflow also asks for its
        # cluster's name and enrichment, a few requests more than the ~1 a run is counted.
        jobs = len(app.scheduler.job_ids)

        async def second_round() -> bool:
            return app.scheduler.runs >= 2 * jobs

        await eventually(second_round, timeout=20)
        limiter = app.parts.budget
        before, t0 = int(h.sim.requests()["total"]), time.monotonic()
        waiting = []
        while time.monotonic() - t0 < 3.0:
            waiting.append(limiter.waiting_total())
            await asyncio.sleep(0.02)
        rate = (int(h.sim.requests()["total"]) - before) / (time.monotonic() - t0)
        median = sorted(waiting)[len(waiting) // 2]
        assert median <= 1 and max(waiting) <= jobs // 2, (jobs, waiting)
        assert 2.0 <= rate <= 5.0, rate
        stored = [s.event for s in await h.stored() if s.event.kind == "watcher.budget_exceeded"]
        assert len(stored) == 1  # once per episode, however many polls were stretched
