"""The outbox worker: sends stored deliveries, retries with backoff, dead-letters old ones.

The poller commits events and their deliveries to the store before anything is sent (the
durable outbox, SPEC.md section 4); this module is the only thing that moves a delivery out
of ``pending``. It owns no state of its own that matters across restarts: everything it
needs is in the store, so a restart simply resumes the queues.

Rules it keeps:

- Order per URL: at most one delivery per URL is in flight, and it is the head of that URL's
  queue (``Store.due_deliveries``), so a URL receives its messages in creation order.
- A send is never cut short here: the sender bounds it (the URL's send timeout is the
  plugin's socket read timeout) and its work may run in a thread that a cancel would not
  stop, so cancelling it on a timer would let the retry race, or be overtaken by, a
  message still on the wire. A URL stays busy until its send has really ended; one that
  takes longer than the sender's worst case (``stuck_after_s``) is logged, and waited for.
- No answer within the send timeout is an unknown outcome (``SendResult.uncertain``): the
  service may have the message. It is a failed attempt, retried with backoff like any
  other, but recorded and counted as "maybe delivered" (store, ``events``, metrics), so a
  duplicate at the receiver can be explained.
- Isolation between URLs: each send runs in its own task; a URL that fails or hangs only
  holds back its own queue. ``concurrency`` bounds the sends in flight across all URLs.
- Retries: exponential backoff with full jitter, ``rand() * min(cap, base * 2**attempts)``.
  A delivery always gets its attempt, however old it is (after downtime a late message is
  better than none); when an attempt fails and the delivery is older than ``max_age_s`` it is
  dead-lettered: kept in the store as ``dead``, counted, and logged without its URL.
- Wake-ups: the loop sleeps until the earliest retry it scheduled, a ``wake()`` (the runtime
  calls it after each commit), a finished send, or ``poll_interval_s`` as a safety net for
  deliveries it could not know about (other writers). Retries scheduled before a restart are
  known: the first round asks the store for the earliest one (``OutboxStats.next_retry_at``),
  so a retry due seconds after a restart is not left waiting for the safety net.
- Reload: ``reconfigure`` swaps the sender, templates and retry limits in place. Sends in
  flight finish with the sender they started with and record their outcome as usual, so
  a reload (or a burst of them) never cancels or repeats a send. A reload that changes URL
  keys moves their pending deliveries in the store (``Store.rekey_deliveries``) while
  those keys are ``paused``, then calls ``rekey``: a send in flight under an old key keeps
  the new key busy too, since its delivery now sits at the head of the new key's queue.

Semantics: at-least-once per URL. A message is sent twice only if the process dies (or a
shutdown cancels the send) after the notification service accepted it and before
``mark_sent`` is committed, or if an attempt got no answer within the send timeout (then
it is counted as "maybe delivered"). Nothing is dropped silently: a delivery ends ``sent``
or ``dead``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from watcher.core.backoff import full_jitter
from watcher.core.events import Event
from watcher.core.ports import Clock, Delivery, RenderedMessage, Sender, SendResult, Store

log = structlog.get_logger(__name__)

Render = Callable[[str, Sequence[Event]], RenderedMessage]
OnResult = Callable[[str, bool, float], None]
OnUncertain = Callable[[str], None]
StuckAfter = float | Callable[[str], float]


class Dispatcher:
    """Drain the store's outbox through a ``Sender``; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        sender: Sender,
        render: Render,
        clock: Clock,
        retry_base_s: float = 5.0,
        retry_cap_s: float = 600.0,
        max_age_s: float = 86400.0,
        concurrency: int = 8,
        stuck_after_s: StuckAfter = 60.0,
        poll_interval_s: float = 30.0,
        rand: Callable[[], float] = random.random,
        on_result: OnResult | None = None,
        on_uncertain: OnUncertain | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = store
        self._sender = sender
        self._render = render
        self._clock = clock
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._max_age_s = max_age_s
        self._concurrency = concurrency
        self._stuck_after_s = stuck_after_s
        self._poll_interval_s = poll_interval_s
        self._rand = rand
        self._on_result = on_result
        self._on_uncertain = on_uncertain
        self._wake = asyncio.Event()
        # One task per URL at most: the key is the URL, the task sends that URL's head.
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Keys also busy with a send started under another key before a reload re-keyed its
        # delivery (``rekey``); an entry goes when that send ends.
        self._also_busy: dict[str, set[asyncio.Task[None]]] = {}
        # Keys whose queues a reload is moving right now (``paused``): nothing starts there.
        self._paused: set[str] = set()
        # In-memory "not before" per URL, mirroring the retry time written to the store (or
        # set after a store error), so the loop knows when to look again without polling.
        self._hold: dict[str, datetime] = {}
        self._round_now: datetime | None = None  # clock time of the last look at the outbox
        self._stored_retry_at: datetime | None = None  # a retry scheduled before this start
        # Sends finished per URL (a counter). A read of the outbox may predate the outcome a
        # send recorded while the read was under way (PostgreSQL: another connection's
        # snapshot), so a URL whose send finished during the read is skipped that round:
        # its stale head would be sent again. ``_finished`` wakes the loop for a fresh read.
        self._finishes: dict[str, int] = {}
        self._stale_round = False
        self.sent = 0
        self.failed = 0
        self.dead_lettered = 0
        self.maybe_delivered = 0

    # -- public API ---------------------------------------------------------------------

    def wake(self) -> None:
        """Look at the outbox now (call after committing new deliveries). Never blocks."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def reconfigure(
        self,
        *,
        sender: Sender,
        render: Render,
        retry_base_s: float | None = None,
        retry_cap_s: float | None = None,
        max_age_s: float | None = None,
        stuck_after_s: StuckAfter | None = None,
    ) -> list[asyncio.Task[None]]:
        """Use a new sender and templates (and limits) for every send started from now on.

        This is how a reload adopts the sends in flight: they are neither cancelled nor
        restarted, they finish with the sender they started with, record their outcome,
        and keep their URL busy until then, so nothing is sent twice or out of order.
        Returns those sends' tasks: the caller may close the old sender once they are
        done. Works whether or not ``run`` is running.
        """
        self._sender = sender
        self._render = render
        if retry_base_s is not None:
            self._retry_base_s = retry_base_s
        if retry_cap_s is not None:
            self._retry_cap_s = retry_cap_s
        if max_age_s is not None:
            self._max_age_s = max_age_s
        if stuck_after_s is not None:
            self._stuck_after_s = stuck_after_s
        self._wake.set()
        return list(self._inflight.values())

    @contextlib.contextmanager
    def paused(self, url_keys: Iterable[str]) -> Iterator[None]:
        """Start no send for these keys inside the block (sends in flight go on).

        A reload moves pending deliveries between keys while it holds this, so no send
        starts from a half-moved queue nor with a sender that does not know the key yet.
        """
        keys = set(url_keys) - self._paused
        self._paused |= keys
        try:
            yield
        finally:
            self._paused -= keys
            self._wake.set()

    def rekey(self, moves: Mapping[str, str]) -> None:
        """Follow the store's ``rekey_deliveries(moves)``: a send in flight under an old key
        is for a delivery that now heads the new key's queue, so that key stays busy until
        the send ends (else the new sender would send the same delivery again). Retry holds
        are copied to the new key (the later one wins when queues merge)."""
        holds = dict(self._hold)
        for old, new in moves.items():
            if old == new:
                continue
            tasks = set(self._also_busy.get(old, ()))
            if old in self._inflight:
                tasks.add(self._inflight[old])
            if tasks:
                self._also_busy.setdefault(new, set()).update(tasks)
            if old in holds:
                self._hold[new] = max(holds[old], self._hold.get(new, holds[old]))

    def _busy(self, url_key: str) -> bool:
        return url_key in self._inflight or bool(self._also_busy.get(url_key))

    async def run(self, stop: asyncio.Event) -> None:
        """Send due deliveries until ``stop`` is set; then call ``drain`` for a last chance.

        Sends still in flight when ``stop`` is set are left running for ``drain`` to finish
        or cancel. If this coroutine is cancelled, in-flight sends are cancelled too (their
        deliveries stay pending) and the cancellation propagates.
        """
        relay = asyncio.create_task(self._relay(stop), name="dispatcher-stop-relay")
        try:
            await self._note_stored_retries()
            while not stop.is_set():
                self._wake.clear()
                delay: float | None = None
                try:
                    await self._start_due()
                except Exception as exc:
                    # Only the store can fail here; back off instead of spinning on it.
                    log.error("delivery.store_failed", error=type(exc).__name__, phase="poll")
                    delay = self._retry_base_s
                if stop.is_set():
                    break
                if delay is None:
                    delay = self._sleep_for()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
        except BaseException:
            await self._cancel_inflight()
            raise
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay

    async def drain(self, timeout_s: float) -> None:
        """Give due deliveries one bounded last chance (shutdown, or one-shot ``check``).

        Waits for sends already in flight, and keeps sending queue heads that are due, each
        delivery at most once; a URL whose head fails stops there. After ``timeout_s`` the
        remaining sends are cancelled. Anything unsent stays pending for the next start.
        Call it after ``run`` has returned, or without ``run`` at all.
        """
        tried: set[int] = set()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    try:
                        started = await self._start_due(skip_ids=tried, ignore_holds=True)
                    except Exception as exc:
                        log.error("delivery.store_failed", error=type(exc).__name__, phase="drain")
                        started = []
                    tried.update(started)
                    if not self._inflight:
                        if self._stale_round:
                            continue
                        break
                    await asyncio.wait(
                        set(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED
                    )
        except TimeoutError:
            log.warning("delivery.drain_timeout", in_flight=len(self._inflight))
        finally:
            await self._cancel_inflight()

    # -- the loop -----------------------------------------------------------------------

    async def _note_stored_retries(self) -> None:
        """Wake up for the earliest retry scheduled before this start (see the module)."""
        try:
            stats = await self._store.outbox_stats(self._clock.now())
        except Exception as exc:  # the loop's first read meets the same store: it backs off
            log.error("delivery.store_failed", error=type(exc).__name__, phase="start")
            return
        self._stored_retry_at = stats.next_retry_at

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _start_due(
        self, *, skip_ids: set[int] | None = None, ignore_holds: bool = False
    ) -> list[int]:
        """Start a send task for each due queue head whose URL is idle; return their ids."""
        now = self._clock.now()
        self._round_now = now
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return []
        # Heads of busy, held or already tried URLs come back too (still pending and due),
        # so ask for enough rows that they cannot crowd out the ones we can start.
        limit = free + len(self._inflight) + len(self._hold) + len(skip_ids or ())
        finishes = dict(self._finishes)
        due = await self._store.due_deliveries(now, limit=limit)
        started: list[int] = []
        self._stale_round = False
        for delivery in due:
            if len(started) >= free:
                break
            url = delivery.url_key
            if self._busy(url) or url in self._paused:
                continue
            if self._finishes.get(url, 0) != finishes.get(url, 0):
                self._stale_round = True  # read before that send's outcome: read again
                continue
            if skip_ids is not None and delivery.id in skip_ids:
                continue
            hold = self._hold.get(url)
            if not ignore_holds and hold is not None and hold > now:
                continue
            task = asyncio.create_task(self._deliver(delivery), name=f"deliver-{delivery.id}")
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._finished, url))
            started.append(delivery.id)
        return started

    def _finished(self, url_key: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(url_key, None)
        self._finishes[url_key] = self._finishes.get(url_key, 0) + 1
        for key, tasks in list(self._also_busy.items()):
            tasks.discard(task)
            if not tasks:
                del self._also_busy[key]
        # The URL's next delivery may be due right now; another URL may be waiting for a slot.
        self._wake.set()

    def _sleep_for(self) -> float:
        """Seconds until the earliest in-memory retry time of an idle URL (capped).

        A hold that had already passed when the outbox was last read is dropped: that read
        either started the URL's head or found it not due (the store is the authority), and
        a stale hold must not turn into a zero-second spin. A busy URL wakes the loop when
        its send finishes anyway.
        """
        now = self._clock.now()
        delay = self._poll_interval_s
        stored = self._stored_retry_at
        if stored is not None:
            if self._round_now is not None and stored <= self._round_now:
                self._stored_retry_at = None  # that read saw it due: holds take over
            else:
                delay = min(delay, (stored - now).total_seconds())
        for url, hold in list(self._hold.items()):
            if self._busy(url):
                continue
            if self._round_now is not None and hold <= self._round_now:
                del self._hold[url]
                continue
            delay = min(delay, (hold - now).total_seconds())
        return max(0.0, delay)

    async def _cancel_inflight(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one delivery -------------------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        """Send one delivery and record the outcome; never raises except CancelledError."""
        url = delivery.url_key
        started = time.monotonic()
        # Captured now: a reload changes the sender for later sends, never for this one.
        result = await self._send(delivery, self._sender, self._render)
        seconds = time.monotonic() - started
        now = self._clock.now()
        try:
            if result.ok:
                await self._store.mark_sent(delivery.id, now)
                self._hold.pop(url, None)
                self.sent += 1
                log.debug("delivery.sent", url_key=url, delivery_id=delivery.id)
            else:
                self._log_failure(delivery, result)
                await self._store_failure(delivery, result, now)
        except Exception as exc:
            # The store failed to record the outcome: the delivery stays pending (a success
            # may be sent again, which at-least-once allows). Hold the URL so a broken disk
            # does not turn into a hot resend loop.
            log.error(
                "delivery.store_failed",
                url_key=url,
                delivery_id=delivery.id,
                error=type(exc).__name__,
                phase="record",
            )
            self._hold[url] = now + timedelta(
                seconds=max(self._retry_base_s, self._backoff(delivery.attempts))
            )
        self._report(url, result.ok, seconds)
        if result.uncertain:
            self._report_uncertain(url)

    async def _send(self, delivery: Delivery, sender: Sender, render: Render) -> SendResult:
        try:
            message = render(delivery.url_key, delivery.events)
        except Exception as exc:
            # A template problem: report the type only; the message may quote event text.
            return SendResult(ok=False, error=f"render failed: {type(exc).__name__}")
        call = asyncio.ensure_future(_call_sender(sender, delivery.url_key, message))
        try:
            limit = self._stuck_limit(delivery.url_key)
            done, _ = await asyncio.wait({call}, timeout=limit)
            if not done:
                # Longer than the sender's own timeouts allow: something hangs. Cutting it
                # short would free the URL while the message may still be on its way, so
                # say so loudly and keep waiting; only this URL's queue waits with it.
                log.warning(
                    "delivery.send_stuck",
                    url_key=delivery.url_key,
                    delivery_id=delivery.id,
                    waited_s=round(limit, 1),
                )
            return await call
        except asyncio.CancelledError:
            call.cancel()
            raise

    def _stuck_limit(self, url_key: str) -> float:
        limit = self._stuck_after_s
        if callable(limit):
            try:
                return float(limit(url_key))
            except Exception as exc:
                log.warning("delivery.stuck_limit_failed", error=type(exc).__name__)
                return 60.0
        return float(limit)

    def _backoff(self, attempts: int) -> float:
        # ``attempts`` failed before this one: this is failure number attempts + 1.
        return full_jitter(
            max(attempts, 0) + 1, base=self._retry_base_s, cap=self._retry_cap_s, rand=self._rand()
        )

    def _log_failure(self, delivery: Delivery, result: SendResult) -> None:
        self.failed += 1
        if result.uncertain:
            self.maybe_delivered += 1
            # Louder than a plain failure: the retry may reach the receiver a second time.
            log.warning(
                "delivery.maybe_delivered",
                url_key=delivery.url_key,
                delivery_id=delivery.id,
                attempt=delivery.attempts + 1,
                error=result.error,
            )
            return
        log.info(
            "delivery.failed",
            url_key=delivery.url_key,
            delivery_id=delivery.id,
            attempt=delivery.attempts + 1,
            error=result.error,
        )

    async def _store_failure(self, delivery: Delivery, result: SendResult, now: datetime) -> None:
        error = result.error or "send failed"
        maybe = result.uncertain
        age_s = (now - delivery.created_at).total_seconds()
        if age_s >= self._max_age_s:
            await self._store.mark_dead(delivery.id, now, error, maybe_delivered=maybe)
            self._hold.pop(delivery.url_key, None)
            self.dead_lettered += 1
            log.warning(
                "delivery.dead_letter",
                url_key=delivery.url_key,
                delivery_id=delivery.id,
                attempts=delivery.attempts + 1,
                age_s=round(age_s, 1),
                maybe_delivered=delivery.maybe_delivered + int(maybe),
                error=error,
            )
            return
        next_at = now + timedelta(seconds=self._backoff(delivery.attempts))
        await self._store.mark_failed(delivery.id, now, error, next_at, maybe_delivered=maybe)
        self._hold[delivery.url_key] = next_at

    def _report_uncertain(self, url_key: str) -> None:
        if self._on_uncertain is None:
            return
        try:
            self._on_uncertain(url_key)
        except Exception as exc:
            log.warning("delivery.on_uncertain_failed", error=type(exc).__name__)

    def _report(self, url_key: str, ok: bool, seconds: float) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(url_key, ok, seconds)
        except Exception as exc:
            # A metrics hook must never break delivery.
            log.warning("delivery.on_result_failed", error=type(exc).__name__)


async def _call_sender(sender: Sender, url_key: str, message: RenderedMessage) -> SendResult:
    try:
        return await sender.send(
            url_key, title=message.title, body=message.body, severity=message.severity
        )
    except Exception as exc:
        # Senders report failures as SendResult; an exception is a sender bug. Its text
        # may carry the URL (and its token), so only the type is kept.
        return SendResult(ok=False, error=f"sender raised {type(exc).__name__}")
