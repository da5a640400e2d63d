"""Lifecycle: signals, named root tasks, reload and an orderly, bounded shutdown.

Why this module exists: how the process runs and stops is one concern, separate from what
it builds (``app.py``). In the manner of kopf's ``run_tasks``:

- Signal handlers only set events (SIGTERM/SIGINT stop, SIGHUP reloads, SIGUSR1 polls all
  now); the main coroutine does the work.
- ``supervise`` waits for the stop event or the FIRST root task to end. A root task never
  ends by itself, so one that does has crashed: it is logged and ``RootTaskCrashedError``
  gives the process a nonzero exit, so systemd or Kubernetes restarts it.
- Shutdown runs in named phases, each logged and bounded by ``asyncio.timeout``; a phase
  that fails or overruns is logged and the next one still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, NoReturn, Protocol

import structlog

log = structlog.get_logger(__name__)

FULL_GC_EVERY = 100  # generation-1 collections per full one (CPython's default: 10)


class RootTaskCrashedError(RuntimeError):
    """A root task ended while the app was not stopping."""


class RootTasks:
    """The app's named long-running tasks (dispatcher, feed pump, watchdog, ...)."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self._tasks:
            coro.close()
            raise ValueError(f"root task {name!r} already runs")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        return task

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks.values()))

    def names(self) -> list[str]:
        return list(self._tasks)

    def ended(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks.values() if t.done()]

    async def cancel(self, name: str) -> None:
        """Cancel one task and wait for it (the caller bounds the wait)."""
        task = self._tasks.pop(name, None)
        if task is None:
            return
        task.cancel()
        # wait(), not await: the task's own end (cancelled, or an error supervise() already
        # logged) is not ours to raise, while OUR cancellation still propagates.
        await asyncio.wait([task])


async def supervise(
    tasks: RootTasks,
    *,
    stopping: asyncio.Event,
    reload_requested: asyncio.Event,
    reload: Callable[[], Awaitable[None]],
) -> None:
    """Run until ``stopping`` is set; reload on request; raise when a root task ends."""
    while True:
        waiters = [
            asyncio.create_task(stopping.wait(), name="lifecycle.stop"),
            asyncio.create_task(reload_requested.wait(), name="lifecycle.reload"),
        ]
        try:
            await asyncio.wait([*waiters, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if stopping.is_set():
            return  # a task ending during shutdown is not a crash
        crashed = tasks.ended()
        if crashed:
            for task in crashed:
                error = None if task.cancelled() else task.exception()
                log.error(
                    "daemon.task_crashed",
                    task=task.get_name(),
                    error=repr(error) if error is not None else None,
                    exc_info=error,
                )
            raise RootTaskCrashedError(
                "an internal task crashed: " + ", ".join(t.get_name() for t in crashed)
            )
        if reload_requested.is_set():
            reload_requested.clear()
            await reload()


async def phase(name: str, timeout_s: float, step: Callable[[], Awaitable[object]]) -> None:
    """One shutdown phase: logged, bounded; its failure never skips the phases after it."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(0.01, timeout_s)):
            await step()
    except TimeoutError:
        log.warning("shutdown.phase_timeout", phase=name, timeout_s=timeout_s)
    except Exception as exc:
        log.error("shutdown.phase_failed", phase=name, error=repr(exc), exc_info=exc)
    else:
        log.debug("shutdown.phase_done", phase=name, seconds=round(time.monotonic() - started, 3))


@contextlib.contextmanager
def signal_handlers(
    *, stop: Callable[[], None], reload: Callable[[], None], poll_now: Callable[[], None]
) -> Iterator[None]:
    """Install handlers that only set events or schedule work; remove them on exit."""
    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: stop,
        signal.SIGINT: stop,
        signal.SIGHUP: reload,
        signal.SIGUSR1: poll_now,
    }
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)


class Runnable(Protocol):
    """What ``serve`` runs: the app (``app.App``)."""

    stopping: asyncio.Event
    reload_requested: asyncio.Event
    root_tasks: RootTasks

    async def start(self) -> None: ...
    async def stop(self, *, grace_s: float = ...) -> None: ...
    async def reload_from_source(self) -> None: ...
    def request_reload(self) -> None: ...
    def poll_all_now(self) -> None: ...


def exit_after_stop(code: int = 0) -> NoReturn:
    """End the process after a completed stop, without the interpreter's teardown.

    By now every phase has run: polls ended, deliveries settled, the store closed. What the
    teardown would add is freeing every object one by one and a last full collection: 1.6 s
    of the 2.0 s from SIGTERM to exit at 30,000 workflow targets, more at 100,000 (the
    budget is 5 s at any scale, and systemd or Kubernetes kill a slow stop). Output is
    flushed first; atexit hooks and finalizers are skipped on purpose (none of ours needs
    them: what must persist was committed in the phases).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def pause_gc() -> None:
    """No cyclic garbage collection while start-up builds what lives as long as the process.

    Loading 100,000 targets and creating their jobs allocates millions of objects and almost
    no cyclic garbage, yet the allocations set off ever longer full collections: 39 % of the
    start-up time at 100,000 workflow targets, pauses of seconds (docs-drafts/scale-100k.md).
    ``resume_gc`` ends the pause.
    """
    gc.disable()


def resume_gc() -> None:
    """Freeze what start-up built, relax full collections and re-enable the collector.

    Frozen objects are never scanned again: without that, full collections re-scan the
    config, watches and states and stall the loop for hundreds of ms at 10,000 workflows
    (PERF_NOTES.md). The little cyclic garbage start-up made is frozen with them (not
    collected first: a full collection costs ~1 s at 100,000 targets). Full collections come
    at most every FULL_GC_EVERY generation-1 collections (default 10): each poll's new state
    outlives two young collections, and at 30,000 workflows that made one 1-3 s full
    collection every 2-3 s that found almost nothing to free (issue 12.6).
    """
    gc.freeze()
    gc.set_threshold(*gc.get_threshold()[:2], FULL_GC_EVERY)
    gc.enable()


async def serve(app: Runnable) -> None:
    """Start ``app``, supervise it until a stop signal or a crash, then stop it."""
    with signal_handlers(
        stop=app.stopping.set, reload=app.request_reload, poll_now=app.poll_all_now
    ):
        try:
            pause_gc()  # cli.run paused it already, before loading the configuration
            try:
                await app.start()
            finally:
                resume_gc()
            await supervise(
                app.root_tasks,
                stopping=app.stopping,
                reload_requested=app.reload_requested,
                reload=app.reload_from_source,
            )
        finally:
            await app.stop()
