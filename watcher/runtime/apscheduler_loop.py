"""APScheduler 3.11's AsyncIOScheduler, with its wake-ups coalesced (issue 12.6).

APScheduler wakes itself on every job added, modified or finished, through
``call_soon_threadsafe``: one byte written into the event loop's self-pipe each, although
the daemon calls it from the loop's own thread. At 30,000 jobs thousands of wake-ups per
loop turn filled that socket, and the byte the signal handler writes there for SIGTERM was
lost ("Exception ignored when trying to write to the signal wakeup fd"): the daemon never
stopped. Each wake-up also processed every due job again.

One pending wake-up does the work of any number (it processes every due job), so a second
one is not queued while the first waits; on the loop's thread it is queued with
``call_soon``, which writes nothing to the pipe.
"""

from __future__ import annotations

import asyncio

from apscheduler.schedulers.asyncio import AsyncIOScheduler


class CoalescingAsyncIOScheduler(AsyncIOScheduler):  # type: ignore[misc]  # untyped
    """An AsyncIOScheduler with at most one wake-up queued at a time."""

    _wakeup_queued = False

    def wakeup(self) -> None:
        loop: asyncio.AbstractEventLoop | None = self._eventloop
        if loop is None or self._wakeup_queued:
            return  # not started, or shut down; or a queued wake-up will do it
        self._wakeup_queued = True
        if loop is _running_loop():
            loop.call_soon(self._wake)
        else:  # another thread: wake the loop through its pipe, as APScheduler does
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wakeup_queued = False  # a wake-up asked from here on queues a new one
        self._stop_timer()
        self._start_timer(self._process_jobs())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
