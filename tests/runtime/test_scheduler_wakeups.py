"""APScheduler's wake-ups never flood the loop's self-pipe (issue 12.6): at 30,000 jobs,
thousands per loop turn filled it and the byte the signal handler writes for SIGTERM was
lost, so the daemon never stopped."""

from __future__ import annotations

import asyncio
import os
import signal

from watcher.runtime.apscheduler_loop import CoalescingAsyncIOScheduler

WAKEUPS = 20_000  # a few hundred one-byte writes fill a Unix socketpair's buffer


async def test_a_signal_arrives_after_thousands_of_wakeups_in_one_loop_turn() -> None:
    loop = asyncio.get_running_loop()
    scheduler = CoalescingAsyncIOScheduler()
    scheduler.start()
    ran: list[str] = []
    scheduler.add_job(lambda: ran.append("job"), "date", id="job")  # due now
    received = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR2, received.set)
    try:
        for _ in range(WAKEUPS):  # what adding, moving and finishing jobs does
            scheduler.wakeup()
        os.kill(os.getpid(), signal.SIGUSR2)
        async with asyncio.timeout(10):
            await received.wait()
        async with asyncio.timeout(10):
            while not ran:  # and the wake-ups still did their work
                await asyncio.sleep(0.01)
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # the shutdown runs on the loop
    assert ran == ["job"]


async def test_a_wakeup_from_another_thread_still_wakes_the_loop() -> None:
    scheduler = CoalescingAsyncIOScheduler()
    scheduler.start()
    ran = asyncio.Event()
    try:
        await asyncio.to_thread(scheduler.add_job, ran.set, "date", id="job")
        async with asyncio.timeout(10):
            await ran.wait()
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)
