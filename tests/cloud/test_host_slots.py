"""Polls queued behind a busy host wait as one semaphore waiter each, not as aiohttp
requests already signed and built (issue 12.6: 100,000 queued polls held ~2 GB there).

Real client, real session, the simulator over loopback: 40 calls at once through a pool of
2 connections per host; aiohttp's trace hooks count the requests it has started and not yet
ended. No timing is asserted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from watcher.cloud.auth import AkSkAuth
from watcher.cloud.client import CceClient
from watcher.cloud.http import make_session

simulator = pytest.importorskip("watcher.simulator")

PER_HOST = 2
CALLS = 40


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    async with simulator.start_simulator(
        scenarios=["seed"], speed=1.0, autoplay=False, host="127.0.0.1", port=0
    ) as running:
        yield running


async def test_requests_inside_aiohttp_never_exceed_the_pool_per_host(sim: Any) -> None:
    inside = {"now": 0, "most": 0, "started": 0}

    async def started(*_: Any) -> None:
        inside["now"] += 1
        inside["started"] += 1
        inside["most"] = max(inside["most"], inside["now"])

    async def ended(*_: Any) -> None:
        inside["now"] -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(ended)
    trace.freeze()
    async with make_session(limit_per_host=PER_HOST) as session:
        session.trace_configs.append(trace)  # before the first request: no public setter
        a = sim.account
        client = CceClient(
            session,
            endpoint=sim.url,
            auth=AkSkAuth(a.access_key, a.secret_key, project_id=a.project_id),
            project_id=a.project_id,
        )
        t = next(t for t in sim.targets() if t["api"] == "cce")
        calls = [
            client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce") for _ in range(CALLS)
        ]
        workflows = await asyncio.gather(*calls)
    assert {w.uid for w in workflows} == {t["workflow_id"]}
    assert inside["started"] == CALLS
    assert inside["most"] <= PER_HOST  # without the slot: all 40 queue inside aiohttp


def test_a_session_without_connector_limits_still_gets_a_bound() -> None:
    fake = SimpleNamespace(connector=SimpleNamespace(limit_per_host=0))
    client = CceClient.__new__(CceClient)
    client._session = fake  # type: ignore[assignment]
    client._slots = {}
    assert client._host_slot("h")._value == 8  # type: ignore[attr-defined]
