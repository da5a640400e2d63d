"""A notification service that is down, then slow, then too slow, then back (issue 7, items
4 and 12): the real daemon process against the simulator and a real local webhook.

- down (connection refused): nothing arrives, the messages wait and are retried;
- slow (answers after 4.5 s, longer than apprise's own 4 s read timeout, shorter than the
  URL's send timeout of 6 s): each message arrives once and is marked sent. Before the
  send timeout existed every attempt "failed" at 4 s although the webhook had the message,
  and every retry delivered it again;
- too slow (answers after 9 s): the attempt gets no answer within the send timeout, an
  unknown outcome. It is retried with backoff, never alongside or ahead of the next
  message, and reported as "maybe delivered" in `events` and /metrics;
- back: the rest of the scenario arrives at once.

Accounting: the receipts, mapped to stored deliveries, come in delivery order (a message
is never overtaken by a later one); each delivery arrived exactly 1 + maybe_delivered
times; all are sent, none dead.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.crash_support import WATCHER_BIN, DaemonProcess, write_config
from tests.e2e.harness import free_port
from tests.faults.delivery_support import (
    FlakyReceiver,
    deliveries,
    receipts_by_delivery,
    state_shows,
    tweak_config,
    wait_for,
)
from watcher.runtime.app import STORE_FILE
from watcher.simulator import start_simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SEND_TIMEOUT_S = 6.0
SLOW_S = 4.5  # > apprise's 4 s default read timeout, < SEND_TIMEOUT_S
TOO_SLOW_S = 9.0  # > SEND_TIMEOUT_S


async def test_down_then_slow_then_back_everything_arrives_once_in_order(tmp_path: Path) -> None:
    started = time.monotonic()
    receiver = FlakyReceiver()
    await receiver.start()
    db = tmp_path / "state-slow" / STORE_FILE
    http_port = free_port()
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        config = write_config(tmp_path, sim=sim, receiver_url=receiver.url, name="slow")
        tweak_config(config, url_options={"send_timeout_s": SEND_TIMEOUT_S}, http_port=http_port)
        daemon = DaemonProcess(config, tmp_path / "slow.log")
        await daemon.start()
        log = daemon.log_tail
        try:
            # Up: the first message arrives.
            await wait_for(lambda: len(receiver.receipts) == 1, 20, "workflow.detected", log)

            # Down: two steps, their messages are tried and refused.
            await receiver.go_down()
            for _ in range(2):
                change = (await sim.step())["changes"][0]
                await wait_for(partial(state_shows, db, change), 10, f"step {change}", log)
            await wait_for(
                lambda: any(d.state == "pending" and d.attempts >= 2 for d in deliveries(db)),
                10,
                "refused attempts",
                log,
            )
            refused = [d for d in deliveries(db) if d.state == "pending"]
            assert len(refused) == 2 and all(d.maybe_delivered == 0 for d in refused)

            # Slow, but within the send timeout: each arrives once.
            receiver.delay_s = SLOW_S
            await receiver.come_back()
            await wait_for(
                lambda: all(d.state == "sent" for d in deliveries(db)), 20, "slow sends", log
            )
            assert len(receiver.receipts) == 3

            # Too slow: the next message's first attempt is unanswered, "maybe delivered";
            # its retry (full jitter: possibly at once) is answered at once.
            receiver.delay_s = 0.0
            receiver.delay_next.append(TOO_SLOW_S)
            change = (await sim.step())["changes"][0]
            await wait_for(lambda: state_shows(db, change), 10, f"step {change}", log)
            await wait_for(
                lambda: any(d.maybe_delivered for d in deliveries(db)),
                SEND_TIMEOUT_S + 8,
                "a maybe-delivered attempt",
                log,
            )

            # Back: the retry and the rest of the scenario go through.
            while (await sim.step())["changes"]:
                pass
            await wait_for(
                lambda: (
                    bool(deliveries(db))
                    and all(d.state == "sent" for d in deliveries(db))
                    and len(receiver.receipts) >= len(deliveries(db)) + 1
                ),
                20,
                "everything sent",
                log,
            )
            await receiver.wait_quiet(1.0, 5.0)

            metrics = await _get(f"http://127.0.0.1:{http_port}/metrics")
            events = subprocess.run(
                [str(WATCHER_BIN), "events", "--config", str(config), "--limit", "100"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        finally:
            await daemon.terminate()
            await receiver.stop()

    stored = deliveries(db)
    arrivals = receipts_by_delivery(receiver.receipts, stored)
    order = [delivery_id for _, delivery_id in arrivals]
    counts = Counter(order)
    maybe = {d.id: d.maybe_delivered for d in stored}
    elapsed = time.monotonic() - started
    print(
        f"slow service: {len(stored)} deliveries, {len(order)} receipts, "
        f"{sum(maybe.values())} maybe-delivered attempts, {elapsed:.1f} s"
    )
    assert order == sorted(order), f"a message was overtaken: {order}"
    assert set(counts) == {d.id for d in stored}, "a delivery never arrived"
    # The only extra copies are the retries after an unanswered attempt.
    assert {i: n - 1 for i, n in counts.items()} == maybe, (counts, maybe)
    assert sum(maybe.values()) == 1
    assert all(d.state == "sent" for d in stored)
    (unsure,) = [d for d in stored if d.maybe_delivered]
    assert unsure.last_error and "maybe delivered" in unsure.last_error

    assert 'cce_watcher_deliveries_maybe_delivered_total{url="json-1"} 1.0' in metrics
    assert "1 maybe delivered" in events, events


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.text()


async def test_a_webhook_answering_after_10_s_gets_one_copy_and_is_not_dead(
    tmp_path: Path,
) -> None:
    """The issue's case: a 10 s webhook received N copies and could end dead-lettered."""
    receiver = FlakyReceiver()
    receiver.delay_s = 10.0
    await receiver.start()
    db = tmp_path / "state-tenseconds" / STORE_FILE
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        config = write_config(tmp_path, sim=sim, receiver_url=receiver.url, name="tenseconds")
        daemon = DaemonProcess(config, tmp_path / "tenseconds.log")
        await daemon.start()
        try:
            await wait_for(
                lambda: len(receiver.receipts) == 1, 20, "the first POST", daemon.log_tail
            )
            await wait_for(
                lambda: bool(deliveries(db)) and deliveries(db)[0].state != "pending",
                15,
                "the outcome",
                daemon.log_tail,
            )
            await asyncio.sleep(1.0)
        finally:
            await daemon.terminate()
            await receiver.stop()
    (delivery,) = deliveries(db)
    assert len(receiver.receipts) == 1
    assert (delivery.state, delivery.attempts, delivery.maybe_delivered) == ("sent", 1, 0)
