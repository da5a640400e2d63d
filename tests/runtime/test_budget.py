"""The per-host budget limits the request rate and serves active polls first."""

from __future__ import annotations

import asyncio

from watcher.runtime import budget
from watcher.runtime.budget import HostBudget


async def test_burst_is_immediate_then_rate_limited() -> None:
    limiter = HostBudget(rate=50, burst=5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await limiter.acquire("h")
    assert loop.time() - start < 0.05
    for _ in range(5):
        await limiter.acquire("h")
    # five more tokens at 50/s need about 0.1 s
    assert loop.time() - start >= 0.08


async def test_hosts_are_independent() -> None:
    limiter = HostBudget(rate=1, burst=1)
    await limiter.acquire("a")
    await asyncio.wait_for(limiter.acquire("b"), timeout=0.1)


async def test_active_waiters_go_before_idle_ones() -> None:
    limiter = HostBudget(rate=100, burst=1)
    await limiter.acquire("h")  # empty the bucket
    order: list[str] = []

    async def take(name: str, prio: budget.Priority) -> None:
        await limiter.acquire("h", priority=prio)
        order.append(name)

    idle = [asyncio.create_task(take(f"idle{i}", budget.IDLE)) for i in range(3)]
    await asyncio.sleep(0)
    active = [asyncio.create_task(take(f"active{i}", budget.ACTIVE)) for i in range(2)]
    await asyncio.gather(*idle, *active)
    assert order[:2] == ["active0", "active1"]
    assert sorted(order[2:]) == ["idle0", "idle1", "idle2"]


async def test_cancelled_waiter_does_not_leak_tokens() -> None:
    limiter = HostBudget(rate=20, burst=1)
    await limiter.acquire("h")
    waiter = asyncio.create_task(limiter.acquire("h"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.wait_for(limiter.acquire("h"), timeout=0.5)
    assert limiter.waiting("h") == 0
