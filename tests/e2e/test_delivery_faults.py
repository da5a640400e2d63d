"""Delivery faults end to end: a failing URL catches up in order without delaying the other
one, and a hanging notification service never stalls polling (SPEC.md sections 4 and 5)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Harness, WebhookReceiver, running
from watcher.core.ports import OutboxStats

pytestmark = pytest.mark.slow

CLEAN = [
    ["workflow.detected"],
    ["workflow.started", "task.started"],
    ["task.succeeded"],
    ["task.started"],
    ["task.succeeded"],
]


async def _steps(h: Harness, n: int, *, settle: bool) -> None:
    for _ in range(n):
        await h.step()
        if settle:
            await h.settle()
        else:
            await h.wait_polled()


async def _wait(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_failing_webhook_catches_up_in_order_and_mail_is_not_delayed(
    tmp_path: Path,
) -> None:
    hook = WebhookReceiver(fail_first=6)
    async with running(tmp_path, ["clean_upgrade"], webhook=hook) as h:
        await h.wait_polled()
        await _steps(h, 4, settle=False)
        # mail has every message while the webhook is still refusing (fail_first > 0 left
        # or retries still pending); the mail URL never waited for the webhook
        await _wait(lambda: len(h.smtp.messages) == len(CLEAN))
        assert h.email_events() == CLEAN
        assert hook.attempts >= 1
        await h.wait_delivered(timeout=15)
        assert hook.fail_first == 0
        assert await h.webhook_events() == CLEAN  # every one, in commit order, once
        assert h.email_events() == CLEAN


async def test_smtp_refusing_451_catches_up_in_order_and_webhook_is_not_delayed(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, ["clean_upgrade"], smtp_refuse_first=5) as h:
        await h.wait_polled()
        await _steps(h, 4, settle=False)
        await _wait(lambda: len(h.webhook.bodies) == len(CLEAN))
        assert await h.webhook_events() == CLEAN
        await h.wait_delivered(timeout=15)
        assert h.smtp.refuse_first == 0 and h.smtp.attempts >= len(CLEAN) + 5
        assert h.email_events() == CLEAN
        stats = await h.daemon.store.outbox_stats(h.clock.now())
        assert stats == OutboxStats(pending=0, dead=0, oldest_pending_age_s=0.0)


async def test_hanging_webhook_never_stalls_polling(tmp_path: Path) -> None:
    hook = WebhookReceiver(hang_s=60.0)

    def fast(raw: dict[str, Any]) -> None:
        raw["polling"] = {**raw["polling"], "active_s": 0.5, "idle_s": 0.5, "failed_s": 0.5}
        raw["polling"]["max_backoff_s"] = 1

    started = time.monotonic()
    async with running(
        tmp_path, ["precheck_fails"], webhook=hook, json_query="?rto=90", configure=fast
    ) as h:
        await _wait(lambda: hook.attempts >= 1)  # the detected message is now hanging
        await h.step()  # PreCheck Running: more events while the webhook hangs
        window = 4.0
        sim_before = h.sim.requests()["total"]
        runs_before = h.daemon.scheduler.runs
        mails_before = len(h.smtp.messages)
        await asyncio.sleep(window)
        polls = h.daemon.scheduler.runs - runs_before
        # 0.5 s interval over 4 s: ~8 polls; allow slack for loaded CI machines
        assert polls >= 5, polls
        assert h.sim.requests()["total"] - sim_before >= polls
        assert len(h.smtp.messages) > mails_before or mails_before >= 2  # mail keeps flowing
        assert h.email_events()[:2] == [["workflow.detected"], ["workflow.started", "task.started"]]
        assert hook.bodies == []  # still hanging
    assert time.monotonic() - started < 15, "teardown waited for the hanging service"
