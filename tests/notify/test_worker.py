"""SerialWorker and the sender's use of it: one long-lived thread per URL, calls in order."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest
from apprise.decorators import notify as apprise_scheme

from watcher.core.events import Severity
from watcher.notify import targets
from watcher.notify.sender import AppriseSender
from watcher.notify.worker import SerialWorker

_seen: list[threading.Thread] = []


@apprise_scheme(on="threadprobe")
def _probe(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    _seen.append(threading.current_thread())
    return True


async def test_a_urls_sends_run_in_one_thread_not_one_thread_each() -> None:
    """Starting a thread blocks the event loop until it runs: once per URL, not per message
    (issue 12 item 7), and never on the loop's own thread."""
    _seen.clear()
    url = targets.parse_url("threadprobe://probe", name="probe")
    with AppriseSender([url]) as sender:
        for n in range(3):
            result = await sender.send("probe", title=f"t{n}", body="b", severity=Severity.INFO)
            assert result.ok
    assert len(_seen) == 3
    assert len(set(_seen)) == 1 and _seen[0] is not threading.current_thread()


async def test_calls_run_in_order_and_an_abandoned_call_still_holds_back_the_next() -> None:
    worker = SerialWorker("test-worker")
    release = threading.Event()
    log: list[str] = []

    def slow() -> str:
        release.wait(10)
        log.append("slow")
        return "slow"

    first = asyncio.ensure_future(worker.run(slow))
    await asyncio.sleep(0)
    first.cancel()  # the caller stops waiting; the call goes on
    second = asyncio.ensure_future(worker.run(lambda: log.append("next") or "next"))
    await asyncio.sleep(0.05)
    assert log == []  # "next" waits for the abandoned call, so they never overlap
    release.set()
    assert await second == "next"
    assert log == ["slow", "next"]
    worker.close()


async def test_errors_and_context_reach_the_caller() -> None:
    worker = SerialWorker("test-worker")
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    assert await worker.run(var.get) == "caller"

    def boom() -> None:
        raise ValueError("plugin bug")

    with pytest.raises(ValueError, match="plugin bug"):
        await worker.run(boom)
    worker.close()


async def test_an_idle_worker_ends_its_thread_and_starts_again_on_demand() -> None:
    worker = SerialWorker("idle-worker", idle_s=0.05)
    first = await worker.run(threading.current_thread)
    deadline = time.monotonic() + 10
    while first.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not first.is_alive()
    again = await worker.run(threading.current_thread)
    assert again is not first and again.name == "idle-worker"
    worker.close()
