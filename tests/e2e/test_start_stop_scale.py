"""Fast start and stop at scale (issue 12.4), with the real App against the simulator.

2,000 workflow targets and a budget of 2 requests/s: a first round needs 1,000 s, so
"every job polled once" (the old readiness) would keep /readyz at 503 for a quarter of an
hour, and polls parked in the limiter made a stop wait its whole drain bound. Now each job
has its start slot within its stretched interval (ready at once), and a stop releases the
few waiting polls at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import free_port, running
from tests.e2e.ops_support import eventually

pytestmark = pytest.mark.timeout(90)

TARGETS = 2000


def many_targets(port: int) -> Any:
    def configure(raw: dict[str, Any]) -> None:
        # One real workflow, the rest ids the simulator does not know (answered with a 404,
        # polled at the idle interval): what is measured is scheduling, not the cloud.
        base = raw["targets"][0]
        raw["targets"] = [base] + [
            base | {"name": f"w{i:05d}", "workflow_id": str(uuid.uuid5(uuid.NAMESPACE_OID, str(i)))}
            for i in range(1, TARGETS)
        ]
        raw["polling"] = {
            "active_s": 5,
            "idle_s": 5,
            "failed_s": 5,
            "discovery_s": 5,
            "requests_per_second": 2,
            "burst": 2,
            "max_backoff_s": 30,
        }
        raw["http"] = {"enabled": True, "listen": f"127.0.0.1:{port}"}

    return configure


async def test_thousands_of_jobs_at_a_tight_budget_are_ready_at_once_and_stop_fast(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with running(
        tmp_path, ["clean_upgrade"], configure=many_targets(port), stop_grace_s=10.0
    ) as h:
        app = h.daemon
        assert len(app.scheduler.job_ids) == TARGETS
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    return resp.status == 200

            await eventually(ready, timeout=10)
        assert app.scheduler.runs < TARGETS // 10  # ready long before a first round
        assert app.scheduler.inflight <= 3  # the rest wait as timers, not as polls
        assert app.parts.budget.waiting_total() <= 3
        t0 = time.monotonic()
        await app.stop(grace_s=10.0)  # a drain bound of 5 s: nothing should need it
        assert time.monotonic() - t0 < 2.0
        await asyncio.sleep(0)
