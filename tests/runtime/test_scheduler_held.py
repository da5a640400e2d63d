"""At most ``max_in_flight`` runs execute at once; the other due runs wait as a job id each
(not as a started task deep in a request: ~8 KB each, 2 GB at 100,000 workflow targets),
then all start, in due order, as runs in flight end (issue 12.6). No timing is asserted."""

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
    while len(order) < CAP or len(sched._held) < JOBS - CAP:
        await asyncio.sleep(0.01)
    assert sorted(order) == names[:CAP]  # the first due ones run; the rest are held
    assert list(sched._held) == names[CAP:]
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
    while "b" not in sched._held:
        await asyncio.sleep(0.01)
    sched.remove("b")
    release.set()
    while sched.inflight:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await sched.shutdown(1)
    assert ran == ["a"]
