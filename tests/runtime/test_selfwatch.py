"""SelfAlerts: bounded, retried with backoff, recorded into the store once it commits."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.harness import WebhookReceiver
from watcher.core import selfhealth
from watcher.notify.sender import AppriseSender
from watcher.notify.targets import build_urls
from watcher.notify.templates import Renderer
from watcher.runtime.selfwatch import STORE_KEY, SelfAlerts
from watcher.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_queue_is_bounded_and_drops_the_oldest() -> None:
    alerts = SelfAlerts(limit=3)
    events = [selfhealth.store_failed(f"r{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    for event in events:
        alerts.hold(event, ["hook"])
    assert len(alerts) == 3 and alerts.dropped == 2


async def test_a_failing_url_is_retried_with_backoff_and_gets_the_alert_once(
    tmp_path: Path,
) -> None:
    hook = WebhookReceiver(fail_first=2)
    await hook.start()
    try:
        urls = build_urls([hook.url])
        render = Renderer({}, None).for_urls(urls)
        alerts = SelfAlerts(retry_base_s=0.05, retry_cap_s=0.1)
        event = selfhealth.store_failed("disk is full", T0)
        alerts.hold(event, [urls[0].key])
        with AppriseSender(urls) as sender:
            await alerts.send_due(sender, render)
            assert hook.attempts == 1 and not hook.bodies
            due = alerts.next_due_in()
            assert due is not None and due > 0.5  # at least 1 s between attempts
            deadline = time.monotonic() + 10
            while not hook.bodies and time.monotonic() < deadline:
                alerts._held[0].next_at = 0.0  # skip the wait, keep the logic
                await alerts.send_due(sender, render)
            await alerts.send_due(sender, render)  # nothing owed any more: no resend
        assert hook.attempts == 3 and len(hook.bodies) == 1
        assert "disk is full" in hook.bodies[0]["title"]  # the headline is the title
        assert alerts.next_due_in() is None
        # Once the store commits, the alert is recorded without new deliveries.
        store = await SqliteStore.open(tmp_path / "s.sqlite3")
        stored = await alerts.record(store)
        assert [e.kind for e in stored] == ["watcher.store_failed"] and len(alerts) == 0
        (row,) = await store.events_with_deliveries()
        assert row.workflow_key == STORE_KEY and row.deliveries == ()
        await store.close()
    finally:
        await hook.stop()


async def test_urls_still_owed_become_outbox_deliveries_on_recording(tmp_path: Path) -> None:
    alerts = SelfAlerts()
    alerts.hold(selfhealth.store_failed("disk is full", T0), ["hook", "mail"])
    store = await SqliteStore.open(tmp_path / "s.sqlite3")
    await alerts.record(store)
    pending = await store.due_deliveries(T0 + timedelta(days=365 * 10))
    assert sorted(d.url_key for d in pending) == ["hook", "mail"]
    await store.close()
