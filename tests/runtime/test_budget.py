"""The per-host budget limits the request rate and serves active polls first."""

from __future__ import annotations

import asyncio

import pytest

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


async def test_waiting_is_counted_without_scanning_and_cancelled_waiters_leave_it() -> None:
    limiter = HostBudget(rate=2, burst=1)  # the next token comes in 0.5 s
    await limiter.acquire("h")
    waiters = [asyncio.create_task(limiter.acquire("h")) for _ in range(50)]
    await asyncio.sleep(0)
    assert limiter.waiting("h") == 50
    for task in waiters[1:21]:
        task.cancel()
    await asyncio.gather(*waiters[1:21], return_exceptions=True)
    assert limiter.waiting("h") == 30
    await asyncio.wait_for(waiters[0], timeout=2)  # the first in line gets the next token
    assert limiter.waiting("h") == 29
    assert limiter.close() == 29


async def test_waiters_of_one_priority_are_served_first_come_first_served() -> None:
    limiter = HostBudget(rate=200, burst=1)
    await limiter.acquire("h")
    order: list[int] = []

    async def take(n: int) -> None:
        await limiter.acquire("h", priority=budget.IDLE)
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(8)))
    assert order == list(range(8))


async def test_close_ends_every_waiting_poll_at_once_and_refuses_new_ones() -> None:
    limiter = HostBudget(rate=0.01, burst=1)  # one token per 100 s: everybody waits
    await limiter.acquire("h")
    waiters = [asyncio.create_task(limiter.acquire("h")) for _ in range(1000)]
    await asyncio.sleep(0)
    assert limiter.close() == 1000
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 1)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert limiter.waiting("h") == 0
    late = asyncio.create_task(limiter.acquire("other"))
    await asyncio.gather(late, return_exceptions=True)
    assert late.cancelled()


# -- the scheduler's side: stretch, episodes, pacing ------------------------------------


def stretched_demand(active: float, idle: float, s: budget.Stretch) -> float:
    return active / s.active + idle / s.idle


def test_no_stretch_within_the_budget() -> None:
    assert budget.stretch_for(3.0, 6.9, 10.0) == budget.Stretch(1.0, 1.0)


def test_idle_jobs_absorb_the_excess_first_while_active_ones_keep_their_interval() -> None:
    s = budget.stretch_for(active_rate=4.0, idle_rate=12.0, allowed=10.0)
    assert s.active == 1.0
    assert s.idle == 2.0  # 12 / (10 - 4)
    assert stretched_demand(4.0, 12.0, s) == 10.0


def test_beyond_what_idle_jobs_can_absorb_both_stretch_evenly() -> None:
    s = budget.stretch_for(active_rate=20.0, idle_rate=40.0, allowed=10.0, idle_first=4.0)
    assert s.active > 1.0
    assert s.idle == 4.0 * s.active
    assert abs(stretched_demand(20.0, 40.0, s) - 10.0) < 1e-9


def test_stretch_is_continuous_where_active_jobs_start_to_stretch() -> None:
    # idle 40/s, idle_first 4: idle alone absorbs while active <= 10 - 40/4 = 0.
    # Around active = 5 with idle 20: the switch is at 5 + 20/4 = 10.
    below = budget.stretch_for(4.999, 20.0, 10.0)
    above = budget.stretch_for(5.001, 20.0, 10.0)
    assert abs(below.idle - above.idle) < 0.01 and abs(below.active - above.active) < 0.01


def test_an_exceeded_episode_is_reported_once_with_the_rates_and_ends_below_the_margin() -> None:
    seen: list[tuple[str, bool, float, float]] = []
    plan = budget.PollBudget(10.0, on_episode=lambda *a: seen.append(a))
    for i in range(9):
        plan.set_job(f"j{i}", "eu", 1.0, active=False)  # 9 req/s: within
    assert seen == []
    for i in range(9, 30):
        plan.set_job(f"j{i}", "eu", 1.0, active=False)  # up to 30 req/s
    assert seen == [("eu", True, 11.0, 10.0)]  # once, when it crossed
    for i in range(30):
        plan.set_job(f"j{i}", "eu", 1.0, active=False)  # re-polls do not repeat it
    for i in range(30, 21, -1):
        plan.drop_job(f"j{i - 1}")  # 21 req/s ... still exceeded
    assert len(seen) == 1
    for i in range(21, 8, -1):
        plan.drop_job(f"j{i - 1}")  # 9 req/s: not yet below 8
    assert len(seen) == 1
    plan.drop_job("j7")
    assert seen[-1][:2] == ("eu", False) and len(seen) == 2


def test_lanes_have_their_own_budget() -> None:
    plan = budget.PollBudget(10.0)
    for i in range(15):
        plan.set_job(f"a{i}", "eu", 1.0, active=False)
    plan.set_job("b", "ap", 1.0, active=False)
    assert plan.factor("a0") == pytest.approx(15 / (budget.STRETCH_TO * 10))  # 15 into 9
    assert plan.factor("b") == 1.0


def test_factor_returned_by_set_job_applies_to_that_job_class() -> None:
    plan = budget.PollBudget(10.0)
    for i in range(5):
        plan.set_job(f"act{i}", "eu", 1.0, active=True)
    for i in range(10):
        assert plan.set_job(f"idle{i}", "eu", 1.0, active=False) >= 1.0
    assert plan.factor("act0") == 1.0
    # 10 idle req/s into what the 5 active ones leave of the 9 stretched polls may fill
    assert plan.factor("idle0") == pytest.approx(10 / (budget.STRETCH_TO * 10 - 5))


def test_starts_beyond_the_budget_get_reserved_slots_active_ones_skip_the_idle_queue() -> None:
    now = [100.0]
    plan = budget.PollBudget(10.0, burst=2, monotonic=lambda: now[0])
    waits = [plan.reserve("eu", active=False) for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert all(abs(w - 0.1 * (k + 1)) < 1e-9 for k, w in enumerate(waits[2:]))  # 1 per 0.1 s
    assert plan.reserve("eu", active=True) == 0.0  # not behind the idle backlog
    assert abs(plan.reserve("eu", active=False) - 0.6) < 1e-9  # idle ones move back
    now[0] += 10.0  # the backlog drained: tokens refill up to the burst only
    assert plan.reserve("eu", active=False) == 0.0


async def test_an_episode_is_reported_with_the_demand_once_it_settled() -> None:
    seen: list[tuple[str, bool, float, float]] = []
    plan = budget.PollBudget(10.0, on_episode=lambda *a: seen.append(a))
    for i in range(100):  # a start-up adding jobs one by one: crossing at the 11th
        plan.set_job(f"j{i}", "eu", 1.0, active=False)
    assert seen == []
    await asyncio.sleep(budget.REPORT_AFTER_S + 0.2)
    assert seen == [("eu", True, 100.0, 10.0)]


async def test_a_blip_over_the_budget_and_back_within_the_settling_time_says_nothing() -> None:
    seen: list[tuple[str, bool, float, float]] = []
    plan = budget.PollBudget(10.0, on_episode=lambda *a: seen.append(a))
    for i in range(11):
        plan.set_job(f"j{i}", "eu", 1.0, active=False)
    for i in range(11):
        plan.drop_job(f"j{i}")
    await asyncio.sleep(budget.REPORT_AFTER_S + 0.2)
    assert seen == []
