"""The watcher's own alarms: store self-alerts held in memory, and the outbound heartbeat.

Why this exists: every normal message goes through the outbox, which lives in the store. When
the store cannot be written (a full disk, a read-only remount, the file deleted) the outbox
cannot take ``watcher.store_failed`` either, so ``SelfAlerts`` keeps such events in memory
(bounded), sends them straight to the notification URLs with backoff, and writes them into
the store once it commits again (the URLs still owed the message become ordinary outbox
deliveries). ``Heartbeat`` is the dead-man's switch: a request to a monitoring service every
N seconds while the watcher is healthy, so the death of the whole process pages someone too.
``run_self_alerts`` and ``run_heartbeat`` are the two root tasks that drive them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
import structlog

from watcher.core.backoff import full_jitter
from watcher.core.events import Event
from watcher.core.ports import PlannedDelivery, RenderedMessage, Sender, Store

if TYPE_CHECKING:
    from watcher.config.schema import HeartbeatSettings

log = structlog.get_logger(__name__)

STORE_KEY = "watcher/_store"  # the workflow_key self-alerts are recorded under

Render = Callable[[str, Sequence[Event]], RenderedMessage]


@dataclass
class _Held:
    event: Event
    url_keys: list[str]  # URLs still owed this message
    attempts: int = 0
    next_at: float = 0.0  # monotonic
    sent_to: list[str] = field(default_factory=list)


class SelfAlerts:
    """Events about the watcher itself that the store could not take (yet)."""

    def __init__(self, *, limit: int = 32, retry_base_s: float = 5.0, retry_cap_s: float = 300.0):
        self._held: deque[_Held] = deque()
        self._limit = limit
        self._base = retry_base_s
        self._cap = retry_cap_s
        self._lock = asyncio.Lock()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, event: Event, url_keys: Sequence[str]) -> None:
        """Keep ``event`` for ``url_keys``; beyond the bound the oldest one is dropped."""
        self._held.append(_Held(event, list(dict.fromkeys(url_keys))))
        while len(self._held) > self._limit:
            gone = self._held.popleft()
            self.dropped += 1
            log.error("selfalert.dropped", kind=gone.event.kind, held=len(self._held))

    async def record(self, store: Store) -> list[Event]:
        """Write the held events (oldest first) with the URLs still owed as outbox deliveries.

        Returns the events newly stored; stops at the first failing commit (the store is
        still sick) and keeps that event and the rest.
        """
        stored: list[Event] = []
        async with self._lock:
            while self._held:
                held = self._held[0]
                key = held.event.dedup_key
                planned = [PlannedDelivery(url_key=u, event_keys=(key,)) for u in held.url_keys]
                try:
                    stored += await store.commit_poll(STORE_KEY, None, [held.event], planned)
                except Exception as exc:  # the store is still failing: keep it in memory
                    log.warning("selfalert.record_failed", error=type(exc).__name__)
                    break
                self._held.popleft()
                log.info(
                    "selfalert.recorded",
                    kind=held.event.kind,
                    sent_directly=len(held.sent_to),
                    left_to_outbox=len(held.url_keys),
                )
        return stored

    def next_due_in(self) -> float | None:
        """Seconds until the earliest held send is due, None when nothing is owed."""
        owed = [h.next_at for h in self._held if h.url_keys]
        return max(0.0, min(owed) - time.monotonic()) if owed else None

    async def send_due(self, sender: Sender, render: Render) -> None:
        """Send every due held message straight to its URLs; failures back off per event."""
        async with self._lock:
            now = time.monotonic()
            for held in list(self._held):
                if not held.url_keys or held.next_at > now:
                    continue
                failed: list[str] = []
                for url_key in held.url_keys:
                    if not await self._send(sender, render, url_key, held.event):
                        failed.append(url_key)
                    else:
                        held.sent_to.append(url_key)
                held.url_keys = failed
                held.attempts += 1
                if failed:
                    delay = full_jitter(
                        held.attempts,
                        base=self._base,
                        cap=self._cap,
                        rand=random.random(),  # noqa: S311
                    )
                    held.next_at = time.monotonic() + max(1.0, delay)

    @staticmethod
    async def _send(sender: Sender, render: Render, url_key: str, event: Event) -> bool:
        try:
            message = render(url_key, [event])
        except Exception as exc:  # a broken template must not silence a store alarm
            log.warning("selfalert.render_failed", url_key=url_key, error=type(exc).__name__)
            message = RenderedMessage(
                title=f"[{event.severity.upper()}] {event.kind}",
                body=event.message,
                severity=event.severity,
            )
        result = await sender.send(
            url_key, title=message.title, body=message.body, severity=message.severity
        )
        if result.ok:
            log.info("selfalert.sent", kind=event.kind, url_key=url_key)
        else:
            log.warning(
                "selfalert.send_failed", kind=event.kind, url_key=url_key, error=result.error
            )
        return result.ok


class Heartbeat:
    """GET (or POST) one monitoring URL; healthchecks.io, Uptime Kuma push, Cronitor style."""

    def __init__(self, url: str, *, method: str = "GET", timeout_s: float = 10.0) -> None:
        self._url = url
        self._method = method
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.sent = 0
        self.failed = 0

    async def beat(self, session: aiohttp.ClientSession, status: str) -> bool:
        """One ping; True on a 2xx answer. Never raises, never logs the URL (it is a secret)."""
        data = status.encode() if self._method == "POST" else None
        try:
            async with session.request(
                self._method, self._url, data=data, timeout=self._timeout, allow_redirects=False
            ) as response:
                ok = 200 <= response.status < 300
                reason = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok, reason = False, type(exc).__name__
        if ok:
            self.sent += 1
            log.debug("heartbeat.sent")
        else:
            self.failed += 1
            log.warning("heartbeat.failed", error=reason)
        return ok


async def run_self_alerts(
    alerts: SelfAlerts,
    wake: asyncio.Event,
    *,
    store: Store,
    store_failing: Callable[[], bool],
    on_stored: Callable[[list[Event]], None],
    sender: Callable[[], Sender],
    render: Callable[[], Render],
    period_s: Callable[[], float],
) -> None:
    """The self-alert root task: record held alerts once the store commits, else send them
    straight out. ``sender``/``render`` are read each round: a reload may replace them."""
    while True:
        if len(alerts):
            if not store_failing():
                stored = await alerts.record(store)
                if stored:
                    on_stored(stored)
            await alerts.send_due(sender(), render())
        due = alerts.next_due_in()
        wait = period_s() if due is None else min(due, period_s())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(0.05, wait))
        wake.clear()


async def run_heartbeat(
    conf: Callable[[], HeartbeatSettings],
    *,
    withheld_reason: Callable[[], str | None],
    status: Callable[[], str],
    on_sent: Callable[[bool], None] = lambda ok: None,
) -> None:
    """The heartbeat root task: ping the URL while healthy and ready, else stay quiet (and
    say why once). ``conf`` is read each round: a reload may change it. ``on_sent`` hears
    each ping's result (the heartbeat metrics the CceWatcherHeartbeatMissing alert reads)."""
    async with aiohttp.ClientSession() as session:
        withheld: str | None = None
        while True:
            settings = conf()
            if settings.url is not None:
                reason = withheld_reason()
                if reason is None:
                    beat = Heartbeat(
                        settings.url.get_secret_value(),
                        method=settings.method,
                        timeout_s=settings.timeout_s,
                    )
                    on_sent(await beat.beat(session, status()))
                elif reason != withheld:
                    log.warning("heartbeat.withheld", reason=reason)
                withheld = reason
            await asyncio.sleep(settings.interval_s)
