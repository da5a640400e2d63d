"""Deliveries are stored under URL keys, and an unnamed URL's key is its position
(``json-1``). A restart with the URL list reordered (or a URL removed) must not send a
queue to whichever URL now has its old key: each queue follows its own URL
(``App._follow_url_keys``, ``watcher.notify.url.follow_keys``). Real daemon in process,
real webhook receivers, real SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import base_settings
from tests.faults.delivery_support import FlakyReceiver
from watcher.config import settings_from_mapping
from watcher.runtime.app import App
from watcher.simulator import start_simulator


async def _until(done: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _keys(receiver: FlakyReceiver) -> list[str]:
    return [key for r in receiver.receipts for _, key in r.events]


async def _pending(daemon: App) -> list[str]:
    return [d.url_key for d in await daemon.store.list_deliveries(limit=50, state="pending")]


async def _until_pending(daemon: App, want: list[str], timeout: float = 20) -> None:
    """Wait until the pending queue keys are ``want`` (a receipt comes a moment before the
    daemon records the delivery as sent)."""
    deadline = time.monotonic() + timeout
    while (got := await _pending(daemon)) != want:
        assert time.monotonic() < deadline, f"pending {got}, want {want}"
        await asyncio.sleep(0.05)


async def test_a_restart_with_reordered_urls_sends_each_queue_to_its_own_url(
    tmp_path: Path,
) -> None:
    a, b, c = FlakyReceiver(), FlakyReceiver(), FlakyReceiver()
    for receiver in (a, b, c):
        await receiver.start()
    await b.go_down()  # B's messages stay queued under json-2
    try:
        async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
            state = tmp_path / "state"
            daemon = App(settings_from_mapping(base_settings(sim, state, [a.url, b.url])))
            await daemon.start()
            try:
                await _until(lambda: bool(a.receipts), "A got the first message")
                await _until_pending(daemon, ["json-2"])
                record = await daemon.store.load_url_keys()
                assert record is not None and set(record.fingerprints) == {"json-1", "json-2"}
                assert "127.0.0.1" not in repr(record)  # fingerprints, never the URLs
            finally:
                await daemon.stop(grace_s=2)
            sent_to_a = _keys(a)

            # Restart with the list reordered: A is json-2 now, and B is back up.
            await b.come_back()
            await asyncio.sleep(0.6)  # retry_cap_s 0.5: B's retry is due at the restart
            daemon = App(settings_from_mapping(base_settings(sim, state, [b.url, a.url])))
            await daemon.start()
            try:
                await _until(lambda: bool(b.receipts), "B got its queued message")
                await _until_pending(daemon, [])
            finally:
                await daemon.stop(grace_s=2)
            assert _keys(b) == sent_to_a  # B got its own copy, late but whole
            assert _keys(a) == sent_to_a  # and A did not get B's queue

            # Restart without B while it is down again: its new messages are parked,
            # never sent to C, which now has B's old key.
            await b.go_down()
            await sim.step()
            daemon = App(settings_from_mapping(base_settings(sim, state, [b.url, a.url])))
            await daemon.start()
            try:
                await _until(lambda: len(a.receipts) == 2, "A got the step")
                await _until_pending(daemon, ["json-1"])
            finally:
                await daemon.stop(grace_s=2)
            daemon = App(settings_from_mapping(base_settings(sim, state, [c.url, a.url])))
            await daemon.start()
            try:
                await asyncio.sleep(1.0)  # several retry rounds (retry_cap_s 0.5)
                (parked,) = await _pending(daemon)
                assert parked.startswith("gone-")
            finally:
                await daemon.stop(grace_s=2)
            assert c.receipts == []
    finally:
        for receiver in (a, b, c):
            await receiver.stop()
