"""SIGHUP while a send is in flight sends nothing twice (issue 7, item 5).

The real daemon process, a webhook that answers after 2 s, a queue of messages for it, and
a burst of five SIGHUPs within one second while a send is in flight. A reload used to stop
the outbox worker, drain it for at most 5 s and then cancel the send in flight; apprise's
thread still posted it, the delivery stayed pending, and the new worker sent it again
(once per reload of the burst). Now the running worker adopts the new configuration and
its sends in flight: every message arrives exactly once, in order.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from tests.e2e.crash_support import DaemonProcess, write_config
from tests.faults.delivery_support import (
    FlakyReceiver,
    deliveries,
    receipts_by_delivery,
    state_shows,
    wait_for,
)
from watcher.runtime.app import STORE_FILE
from watcher.simulator import start_simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ANSWER_S = 2.0
QUEUED_STEPS = 4


async def test_a_burst_of_sighups_during_slow_sends_repeats_nothing(tmp_path: Path) -> None:
    receiver = FlakyReceiver()
    receiver.delay_s = ANSWER_S
    await receiver.start()
    db = tmp_path / "state-reload" / STORE_FILE
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        config = write_config(tmp_path, sim=sim, receiver_url=receiver.url, name="reload")
        daemon = DaemonProcess(config, tmp_path / "reload.log")
        await daemon.start()
        log = daemon.log_tail
        try:
            await wait_for(lambda: len(receiver.receipts) == 1, 20, "the first message", log)
            for _ in range(QUEUED_STEPS):  # queue messages behind the slow webhook
                change = (await sim.step())["changes"][0]
                await wait_for(partial(state_shows, db, change), 10, f"step {change}", log)
            assert sum(d.state == "pending" for d in deliveries(db)) >= 3
            await wait_for(lambda: receiver.active == 1, 10, "a send in flight", log)
            assert daemon.proc is not None
            for _ in range(5):
                daemon.proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.2)
            await wait_for(
                lambda: all(d.state == "sent" for d in deliveries(db)),
                (QUEUED_STEPS + 2) * ANSWER_S + 10,
                "every delivery sent",
                log,
            )
            await receiver.wait_quiet(ANSWER_S + 0.5, 10.0)
            assert daemon.running, log()
        finally:
            await daemon.terminate()
            await receiver.stop()
    text = (tmp_path / "reload.log").read_text()
    reloads = text.count('"reload.applied"')
    stored = deliveries(db)
    order = [i for _, i in receipts_by_delivery(receiver.receipts, stored)]
    print(
        f"reload burst: {reloads} reloads applied, {len(order)} receipts, {len(stored)} deliveries"
    )
    assert reloads >= 2, "the burst did not reload (twice: during and after the first)"
    assert [i for i, n in Counter(order).items() if n > 1] == [], f"sent again: {order}"
    assert order == [d.id for d in stored], "every delivery once, in order"
