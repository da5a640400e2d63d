"""SerialWorker: one daemon thread per notification URL that runs blocking sends in order.

Why not a thread per send: ``Thread.start()`` blocks the caller until the new thread has
run, and the caller is the event loop. During a burst (10,000 messages to one URL, issue 12
item 7) that wait, longest when the machine is busy, was paid once per message on the
loop that also starts the polls. Why not a pool (``ThreadPoolExecutor``, ``asyncio.to_thread``):
their threads are joined at interpreter exit, so a hung plugin would hold up the exit, and
a shared pool lets one URL's hung sends take threads from the others.

Decisions:

- Calls run one at a time in submission order: a URL's sends never overlap, even when a
  caller stopped waiting for one (cancelled) and submitted the next.
- The thread is a daemon thread, started on the first call and ended after ``idle_s``
  without work (or by ``close``), so idle URLs and discarded senders keep no thread.
- ``run`` keeps the caller's context variables (the logging context) for the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = Callable[[], None]


class SerialWorker:
    """Runs blocking calls one at a time in one daemon thread; ``await run(call)``."""

    def __init__(self, name: str, *, idle_s: float = 30.0) -> None:
        self._name = name
        self._idle_s = idle_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _running against an idle thread's exit
        self._running = False

    async def run(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` in the worker thread after the calls before it; await its result.

        Cancelling this await abandons the call, it does not stop it: the next call
        starts only after it has ended.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()

        def settle(value: Any, error: BaseException | None) -> None:
            if future.done():  # the awaiting task was cancelled: nobody wants the result
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        def job() -> None:
            value: Any = None
            error: BaseException | None = None
            try:
                value = context.run(call)
            except BaseException as exc:  # handed to the awaiting task, not lost
                error = exc
            # A closed loop means the process is shutting down: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, value, error)

        self._submit(job)
        return await future

    def close(self) -> None:
        """End the thread once the calls already submitted have run (idempotent)."""
        with self._lock:
            if self._running:
                self._running = False
                self._jobs.put(None)

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            if not self._running:
                self._running = True
                threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    # A call submitted meanwhile is in the queue: keep going for it.
                    if self._jobs.empty():
                        self._running = False
                        return
                continue
            if job is None:
                return
            job()
            del job  # what the call referenced is not kept alive while the thread idles
