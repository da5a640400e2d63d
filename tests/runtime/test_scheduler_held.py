"""At most ``max_in_flight`` runs execute at once; the other due runs wait as a job id each
(not as a started task deep in a request: ~8 KB each, 2 GB at 100,000 workflow targets),
then all start, in due order, as runs in flight end (issue 12.6). One lane (region) may not
take every slot. No timing is asserted."""

from __future__ import annotations

import asyncio

from watcher.runtime.scheduler import PollScheduler

JOBS = 12
CAP = 3


async def test_due_runs_beyond_the_cap_wait_as_ids_and_all_run_once_each() -> None:
    sched = PollScheduler(max_in_flight=CAP)
    sched.first_interval_s = 600.0  # one run each within the test
    sched.start()
    release = asyncio.Event()
    order: list[str] = []
    most = 0

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float:
            nonlocal most
            order.append(name)
            most = max(most, sched.inflight)
            await release.wait()
            return 600.0

        return run

    names = [f"j{i:02d}" for i in range(JOBS)]
    for i, name in enumerate(names):
        sched.add(name, job(name), first_delay=0.001 * i)
    while len(order) < CAP or sched._slots.held < JOBS - CAP:
        await asyncio.sleep(0.01)
    assert sorted(order) == names[:CAP]  # the first due ones run; the rest are held
    assert all(sched._slots.is_held(name) for name in names[CAP:])
    # Held runs are late, not a wedged scheduler: /healthz must not fail on them.
    await asyncio.sleep(0.05)
    assert sched.overdue_s() == 0.0
    held_tasks = [t for t in asyncio.all_tasks() if "run_coroutine_job" in repr(t)]
    assert len(held_tasks) <= CAP  # held runs keep no task waiting
    release.set()
    while len(order) < JOBS:
        await asyncio.sleep(0.01)
    await sched.shutdown(1)
    assert sorted(order) == names and most <= CAP
    assert order[CAP:] == names[CAP:]  # held runs started in due order


async def test_a_job_removed_while_held_never_runs() -> None:
    sched = PollScheduler(max_in_flight=1)
    sched.first_interval_s = 600.0
    sched.start()
    release = asyncio.Event()
    ran: list[str] = []

    def job(name: str):  # type: ignore[no-untyped-def]
        async def run() -> float:
            ran.append(name)
            await release.wait()
            return 600.0

        return run

    sched.add("a", job("a"))
    sched.add("b", job("b"), first_delay=0.01)
    while not sched._slots.is_held("b"):
        await asyncio.sleep(0.01)
    sched.remove("b")
    release.set()
    while sched.inflight:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await sched.shutdown(1)
    assert ran == ["a"]


async def test_a_hung_region_cannot_hold_the_other_regions_polls() -> None:
    """A region whose API hangs keeps its runs in flight until their timeouts; they may
    fill their lane's share of the slots, never all of them, so the other region's polls
    keep running (with the total cap alone, they were held behind the hung ones)."""
    sched = PollScheduler(max_in_flight=6, max_in_flight_per_lane=3)
    sched.job_info = lambda job_id: ("hung" if job_id.startswith("h") else "ok", False)
    sched.first_interval_s = 600.0
    sched.start()
    hang = asyncio.Event()  # never set: the hung region's requests do not come back
    runs: dict[str, int] = {}

    def job(name: str, *, hung: bool):  # type: ignore[no-untyped-def]
        async def run() -> float:
            runs[name] = runs.get(name, 0) + 1
            if hung:
                await hang.wait()
            return 0.05

        return run

    for i in range(10):
        sched.add(f"h{i}", job(f"h{i}", hung=True))
    while sched.inflight < 3 or sched._slots.held < 7:
        await asyncio.sleep(0.01)
    for i in range(3):
        sched.add(f"ok{i}", job(f"ok{i}", hung=False), first_delay=0.01)
    while min(runs.get(f"ok{i}", 0) for i in range(3)) < 3:
        await asyncio.sleep(0.01)
    assert sum(runs.get(f"h{i}", 0) for i in range(10)) == 3  # its share, no more
    await sched.shutdown(0.1)
