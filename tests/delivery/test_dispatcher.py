"""The outbox dispatcher over a real SQLite store and a scripted in-memory Sender.

The fake Sender is fine here: the apprise sender is tested on its own against real servers;
these tests are about ordering, isolation, retries, dead letters and shutdown.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.store.factories import T0, FakeClock, make_event
from watcher.core.backoff import full_jitter
from watcher.core.events import Event, Severity, most_severe
from watcher.core.ports import PlannedDelivery, RenderedMessage, SendResult
from watcher.delivery.dispatcher import Dispatcher
from watcher.store.sqlite import SqliteStore


@dataclass
class ScriptedSender:
    """Records every call; fails a URL N times, or hangs it until released or cancelled."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    delivered: list[tuple[str, str]] = field(default_factory=list)
    fail_times: dict[str, int] = field(default_factory=dict)
    always_fail: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)
    raise_for: dict[str, Exception] = field(default_factory=dict)
    gate: asyncio.Event | None = None  # when set, every send waits for it
    held: dict[str, asyncio.Event] = field(default_factory=dict)  # per-URL gates
    unanswered: dict[str, int] = field(default_factory=dict)  # N sends end "maybe delivered"
    active: int = 0
    max_active: int = 0
    active_per_url: dict[str, int] = field(default_factory=dict)
    max_active_per_url: int = 0

    async def send(self, url_key: str, *, title: str, body: str, severity: Severity) -> SendResult:
        self.calls.append((url_key, title))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.active_per_url[url_key] = self.active_per_url.get(url_key, 0) + 1
        self.max_active_per_url = max(self.max_active_per_url, self.active_per_url[url_key])
        try:
            if url_key in self.hang:
                await asyncio.Event().wait()
            if self.gate is not None:
                await self.gate.wait()
            if url_key in self.held:
                await self.held[url_key].wait()
            if url_key in self.raise_for:
                raise self.raise_for[url_key]
            if self.unanswered.get(url_key, 0) > 0:
                self.unanswered[url_key] -= 1
                # The service got the request; only its answer did not come in time.
                self.delivered.append((url_key, title))
                return SendResult(
                    ok=False, error="no answer within 30 s, maybe delivered", uncertain=True
                )
            if url_key in self.always_fail:
                return SendResult(ok=False, error="HTTP 500")
            if self.fail_times.get(url_key, 0) > 0:
                self.fail_times[url_key] -= 1
                return SendResult(ok=False, error="HTTP 503")
            self.delivered.append((url_key, title))
            return SendResult(ok=True)
        finally:
            self.active -= 1
            self.active_per_url[url_key] -= 1

    def titles(self, url_key: str, *, delivered: bool = True) -> list[str]:
        source = self.delivered if delivered else self.calls
        return [t for u, t in source if u == url_key]


def render(url_key: str, events: Sequence[Event]) -> RenderedMessage:
    return RenderedMessage(
        title="+".join(e.dedup_key for e in events),
        body="\n".join(e.message for e in events),
        severity=most_severe(tuple(events)),
    )


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@dataclass
class Rig:
    store: SqliteStore
    sender: ScriptedSender
    clock: FakeClock
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    dispatchers: list[Dispatcher] = field(default_factory=list)

    def dispatcher(self, **options: object) -> Dispatcher:
        kwargs: dict[str, object] = {"rand": lambda: 0.0, **options}
        d = Dispatcher(
            store=self.store,
            sender=self.sender,
            render=render,
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )
        self.dispatchers.append(d)
        return d

    def start(self, **options: object) -> Dispatcher:
        d = self.dispatcher(**options)
        self.tasks.append(asyncio.create_task(d.run(self.stop)))
        return d

    async def commit(self, url_key: str, *keys: str, wake: Dispatcher | None = None) -> None:
        await self.store.commit_poll(
            "wf-1", None, [make_event(k) for k in keys], [PlannedDelivery(url_key, keys)]
        )
        if wake is not None:
            wake.wake()

    async def states(self, *keys: str) -> list[tuple[str, int]]:
        return [(d.state, d.attempts) for d in await self.store.deliveries_for(keys)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock()
    store = await SqliteStore.open(tmp_path / "w.db", clock=clock)
    r = Rig(store=store, sender=ScriptedSender(), clock=clock, stop=asyncio.Event())
    yield r
    r.stop.set()
    async with asyncio.timeout(5):
        await asyncio.gather(*r.tasks)
        for d in r.dispatchers:
            await d.drain(0.5)
    await store.close()


async def test_sends_due_deliveries_and_marks_them_sent(rig: Rig) -> None:
    await rig.commit("A", "a1", "a2")
    await rig.commit("B", "b1")
    d = rig.start()
    await wait_until(lambda: d.sent == 2)
    assert sorted(rig.sender.delivered) == [("A", "a1+a2"), ("B", "b1")]
    assert await rig.states("a1", "b1") == [("sent", 1), ("sent", 1)]


async def test_a_urls_messages_arrive_in_order_despite_failures(rig: Rig) -> None:
    rig.sender.fail_times["A"] = 3
    for key in ("a1", "a2", "a3"):
        await rig.commit("A", key)
    await rig.commit("B", "b1")
    d = rig.start()
    await wait_until(lambda: d.sent == 4)
    assert rig.sender.titles("A") == ["a1", "a2", "a3"]
    # a1 was tried until it went through; nothing later was tried before it.
    assert rig.sender.titles("A", delivered=False) == ["a1", "a1", "a1", "a1", "a2", "a3"]
    assert await rig.states("a1") == [("sent", 4)]


async def test_a_failing_url_does_not_delay_the_others(rig: Rig) -> None:
    rig.sender.always_fail.add("A")
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    d = rig.start(rand=lambda: 1.0)
    for key in ("b1", "b2", "b3"):
        await rig.commit("B", key, wake=d)
    await wait_until(lambda: len(rig.sender.delivered) == 3)
    assert rig.sender.titles("B") == ["b1", "b2", "b3"]
    # A was tried once and waits for its retry (fake time does not move); a2 waits behind a1.
    assert rig.sender.titles("A", delivered=False) == ["a1"]
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert (a1.state, a1.attempts, a1.last_error) == ("pending", 1, "HTTP 500")
    assert a1.next_attempt_at == T0 + timedelta(seconds=5)
    assert await rig.states("a2") == [("pending", 0)]


def test_backoff_doubles_up_to_the_cap_at_full_jitter() -> None:
    ceilings = [full_jitter(n + 1, base=5, cap=600, rand=1.0) for n in range(10)]
    assert ceilings == [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]
    assert full_jitter(10_001, base=5, cap=600, rand=1.0) == 600


def test_backoff_jitter_stays_within_zero_and_the_ceiling() -> None:
    rng = random.Random(1234)
    for attempts in range(20):
        ceiling = min(600.0, 5.0 * 2**attempts)
        samples = [
            full_jitter(attempts + 1, base=5, cap=600, rand=rng.random()) for _ in range(200)
        ]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling / 2  # it is spread, not stuck at the bottom


async def test_stored_retry_times_follow_the_backoff(rig: Rig) -> None:
    rig.sender.always_fail.add("A")
    await rig.commit("A", "a1")
    d = rig.start(rand=lambda: 0.5, max_age_s=10_000)
    waits: list[float] = []

    def failures(n: int) -> Callable[[], bool]:
        return lambda: d.failed == n

    for attempt in range(1, 5):
        await wait_until(failures(attempt))
        (a1,) = await rig.store.deliveries_for(["a1"])
        waits.append((a1.next_attempt_at - rig.clock.now()).total_seconds())
        rig.clock.advance(waits[-1])
        d.wake()
    assert waits == [2.5, 5.0, 10.0, 20.0]


async def test_an_old_failing_delivery_is_dead_lettered(rig: Rig) -> None:
    rig.sender.always_fail.add("https-token-url")
    await rig.commit("https-token-url", "a1")
    await rig.commit("B", "b1")
    with capture_logs() as logs:
        d = rig.start(rand=lambda: 1.0, max_age_s=3600)
        await wait_until(lambda: d.failed == 1 and d.sent == 1)
        assert await rig.states("a1") == [("pending", 1)]
        rig.clock.advance(3600)
        d.wake()
        await wait_until(lambda: d.dead_lettered == 1)
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert (a1.state, a1.attempts, a1.last_error) == ("dead", 2, "HTTP 500")
    stats = await rig.store.outbox_stats(rig.clock.now())
    assert (stats.dead, stats.pending) == (1, 0)
    (dead_log,) = [e for e in logs if e["event"] == "delivery.dead_letter"]
    assert dead_log["url_key"] == "https-token-url"
    assert dead_log["delivery_id"] == a1.id
    assert dead_log["log_level"] == "warning"


async def test_an_old_delivery_still_gets_its_attempt(rig: Rig) -> None:
    """After long downtime a late message is better than none: age alone never kills."""
    await rig.commit("A", "a1")
    rig.clock.advance(7 * 86400)
    d = rig.start()
    await wait_until(lambda: d.sent == 1)
    assert await rig.states("a1") == [("sent", 1)]


async def test_a_stuck_send_is_never_cut_short_and_holds_only_its_own_url(rig: Rig) -> None:
    """Cutting a send short freed its URL while the message could still be on the wire
    (apprise's thread keeps posting), so the retry raced it or a later message overtook
    it. Now the URL waits for its send to really end; a warning says it is stuck."""
    rig.sender.held["A"] = asyncio.Event()
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    with capture_logs() as logs:
        d = rig.start(stuck_after_s=0.2, rand=lambda: 1.0)
        await wait_until(lambda: d.in_flight == 1)
        await rig.commit("B", "b1", wake=d)
        await rig.commit("B", "b2", wake=d)
        await wait_until(lambda: len(rig.sender.delivered) == 2)
        await wait_until(lambda: any(e["event"] == "delivery.send_stuck" for e in logs))
    assert rig.sender.titles("B") == ["b1", "b2"]  # B went through while A was stuck
    await asyncio.sleep(0.3)
    assert rig.sender.titles("A", delivered=False) == ["a1"]  # no retry, no a2 meanwhile
    assert d.failed == 0
    assert await rig.states("a1", "a2") == [("pending", 0), ("pending", 0)]
    (stuck,) = [e for e in logs if e["event"] == "delivery.send_stuck"]
    assert stuck["url_key"] == "A" and stuck["log_level"] == "warning"
    rig.sender.held["A"].set()
    await wait_until(lambda: d.sent == 4)
    assert rig.sender.titles("A") == ["a1", "a2"]
    assert rig.sender.titles("A", delivered=False) == ["a1", "a2"]
    assert rig.sender.max_active_per_url == 1
    assert await rig.states("a1", "a2") == [("sent", 1), ("sent", 1)]


async def test_a_stuck_limit_per_url(rig: Rig) -> None:
    rig.sender.held["A"] = asyncio.Event()
    rig.sender.held["B"] = asyncio.Event()
    await rig.commit("A", "a1")
    await rig.commit("B", "b1")
    with capture_logs() as logs:
        d = rig.start(stuck_after_s=lambda url: 0.1 if url == "A" else 3600.0)
        await wait_until(lambda: any(e["event"] == "delivery.send_stuck" for e in logs))
        await asyncio.sleep(0.2)
    assert [e["url_key"] for e in logs if e["event"] == "delivery.send_stuck"] == ["A"]
    rig.sender.held["A"].set()
    rig.sender.held["B"].set()
    await wait_until(lambda: d.sent == 2)


async def test_no_answer_is_maybe_delivered_retried_with_backoff_and_in_order(rig: Rig) -> None:
    rig.sender.unanswered["A"] = 2
    uncertain: list[str] = []
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    with capture_logs() as logs:
        d = rig.start(rand=lambda: 0.5, on_uncertain=uncertain.append)
        await wait_until(lambda: d.failed == 1)
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert (a1.state, a1.attempts, a1.maybe_delivered) == ("pending", 1, 1)
    assert a1.last_error == "no answer within 30 s, maybe delivered"
    assert a1.next_attempt_at == T0 + timedelta(seconds=2.5)  # backoff, not at once
    assert uncertain == ["A"] and d.maybe_delivered == 1
    (warning,) = [e for e in logs if e["event"] == "delivery.maybe_delivered"]
    assert warning["log_level"] == "warning" and warning["delivery_id"] == a1.id
    await asyncio.sleep(0.1)
    assert rig.sender.titles("A", delivered=False) == ["a1"]  # a2 never overtakes a1
    rig.clock.advance(2.5)
    d.wake()
    await wait_until(lambda: d.failed == 2)
    rig.clock.advance(5.0)
    d.wake()
    await wait_until(lambda: d.sent == 2)
    assert rig.sender.titles("A", delivered=False) == ["a1", "a1", "a1", "a2"]
    assert rig.sender.max_active_per_url == 1
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert (a1.state, a1.attempts, a1.maybe_delivered) == ("sent", 3, 2)
    assert uncertain == ["A", "A"] and d.maybe_delivered == 2


async def test_an_old_unanswered_delivery_is_dead_lettered_as_maybe_delivered(rig: Rig) -> None:
    rig.sender.unanswered["A"] = 5
    await rig.commit("A", "a1")
    rig.clock.advance(3600)
    d = rig.start(max_age_s=3600)
    await wait_until(lambda: d.dead_lettered == 1)
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert (a1.state, a1.attempts, a1.maybe_delivered) == ("dead", 1, 1)
    assert a1.last_error == "no answer within 30 s, maybe delivered"


async def test_reconfigure_adopts_a_send_in_flight_and_never_repeats_it(rig: Rig) -> None:
    """A reload hands the dispatcher a new sender while a send is in flight: that send
    finishes with the old sender and is recorded once; later sends use the new one."""
    old = rig.sender
    old.held["A"] = asyncio.Event()
    await rig.commit("A", "a1")
    d = rig.start()
    await wait_until(lambda: old.active == 1)
    await rig.commit("A", "a2", wake=d)
    new = ScriptedSender()
    adopted: list[asyncio.Task[None]] = []
    for _ in range(5):  # a burst of reloads
        adopted = d.reconfigure(sender=new, render=render, retry_base_s=1.0)
        await asyncio.sleep(0.01)
    assert len(adopted) == 1 and not adopted[0].done()
    assert new.calls == []  # A is busy: nothing else goes to it, not even a2
    old.held["A"].set()
    await wait_until(lambda: d.sent == 2)
    assert adopted[0].done()
    assert old.calls == [("A", "a1")] and old.delivered == [("A", "a1")]
    assert new.calls == [("A", "a2")]
    assert await rig.states("a1", "a2") == [("sent", 1), ("sent", 1)]


async def test_a_reload_swapping_url_keys_never_repeats_a_send_in_flight(rig: Rig) -> None:
    """Two URLs swap keys (reordered unnamed URLs) while both have a send in flight: the
    store moves their queues, and each send in flight keeps its delivery's new key busy,
    so the new sender never sends those deliveries again; a2 follows a1 in order."""
    old = rig.sender
    old.held["A"] = asyncio.Event()
    old.held["B"] = asyncio.Event()
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    await rig.commit("B", "b1")
    d = rig.start()
    await wait_until(lambda: old.active == 2)
    moves = {"A": "B", "B": "A"}
    with d.paused(moves):
        assert await rig.store.rekey_deliveries(moves) == {"A": 2, "B": 1}
    d.rekey(moves)
    new = ScriptedSender()
    d.reconfigure(sender=new, render=render)
    old.held["A"].set()  # a1 ends; key A now heads with b1, still on the wire
    await wait_until(lambda: d.sent >= 1)
    await asyncio.sleep(0.05)
    assert new.calls == []
    old.held["B"].set()
    await wait_until(lambda: d.sent == 3)
    assert old.calls == [("A", "a1"), ("B", "b1")]
    assert new.calls == [("B", "a2")]
    assert await rig.states("a1", "a2", "b1") == [("sent", 1), ("sent", 1), ("sent", 1)]


async def test_no_send_starts_for_a_paused_key(rig: Rig) -> None:
    d = rig.start(poll_interval_s=3600)
    with d.paused(["C"]):
        await rig.commit("C", "c1", wake=d)
        await rig.commit("D", "d1", wake=d)
        await wait_until(lambda: d.sent == 1)
        await asyncio.sleep(0.05)
        assert rig.sender.calls == [("D", "d1")]
    await wait_until(lambda: d.sent == 2, timeout=2.0)  # leaving the block wakes the loop


async def test_reconfigure_without_sends_in_flight_returns_nothing(rig: Rig) -> None:
    d = rig.dispatcher()
    assert d.reconfigure(sender=ScriptedSender(), render=render) == []


async def test_concurrency_bounds_sends_in_flight(rig: Rig) -> None:
    rig.sender.gate = asyncio.Event()
    for url in "ABCDE":
        await rig.commit(url, url.lower())
    d = rig.start(concurrency=2)
    await wait_until(lambda: rig.sender.active == 2)
    await asyncio.sleep(0.05)
    assert rig.sender.max_active == 2
    rig.sender.gate.set()
    await wait_until(lambda: d.sent == 5)
    assert rig.sender.max_active == 2


async def test_wake_picks_up_a_new_delivery_without_waiting_for_the_poll(rig: Rig) -> None:
    d = rig.start(poll_interval_s=3600)
    await asyncio.sleep(0.05)  # the loop is now asleep with nothing to do
    await rig.commit("A", "a1", wake=d)
    await wait_until(lambda: d.sent == 1, timeout=2.0)


async def test_a_retry_stored_before_a_restart_is_sent_when_due_not_at_the_next_poll(
    rig: Rig,
) -> None:
    """A new process knows no retry times: it asks the store for the earliest one."""
    await rig.commit("A", "a1")
    (head,) = await rig.store.due_deliveries(T0)
    await rig.store.mark_failed(head.id, T0, "HTTP 503", T0 + timedelta(seconds=0.2))
    d = rig.start(poll_interval_s=3600)
    await asyncio.sleep(0.05)
    assert d.sent == 0  # not due yet
    rig.clock.advance(0.2)  # the retry is due; the loop sleeps until then, not an hour
    await wait_until(lambda: d.sent == 1, timeout=2.0)


async def test_drain_sends_what_is_due_without_a_running_loop(rig: Rig) -> None:
    d = rig.dispatcher()
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    await rig.commit("B", "b1")
    await d.drain(2.0)
    assert rig.sender.titles("A") == ["a1", "a2"]
    assert rig.sender.titles("B") == ["b1"]


async def test_drain_tries_each_delivery_once_and_stops_a_failing_url(rig: Rig) -> None:
    rig.sender.always_fail.add("A")
    d = rig.dispatcher(rand=lambda: 0.0)  # a zero backoff would make a1 due again at once
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    await d.drain(2.0)
    assert rig.sender.titles("A", delivered=False) == ["a1"]
    assert await rig.states("a1", "a2") == [("pending", 1), ("pending", 0)]


async def test_failed_heads_do_not_crowd_out_other_urls_in_drain(rig: Rig) -> None:
    """With zero backoff a failed head is due again at once; it must not hide other URLs."""
    rig.sender.always_fail.update({"A", "B"})
    d = rig.dispatcher(concurrency=1, rand=lambda: 0.0)
    for url in "ABC":
        await rig.commit(url, url.lower())
    await d.drain(2.0)
    assert [u for u, _ in rig.sender.calls] == ["A", "B", "C"]
    assert rig.sender.delivered == [("C", "c")]


async def test_drain_is_bounded_and_leaves_unsent_deliveries_pending(rig: Rig) -> None:
    rig.sender.hang.add("A")
    await rig.commit("A", "a1")
    await rig.commit("B", "b1")
    d = rig.start()
    await wait_until(lambda: d.in_flight == 1 and d.sent == 1)
    rig.stop.set()
    await asyncio.wait_for(rig.tasks[0], 2)
    async with asyncio.timeout(3):
        await d.drain(0.2)
    assert d.in_flight == 0
    assert await rig.states("a1") == [("pending", 0)]


async def test_cancelling_run_propagates_and_leaves_the_delivery_pending(rig: Rig) -> None:
    rig.sender.hang.add("A")
    await rig.commit("A", "a1")
    d = rig.dispatcher()
    task = asyncio.create_task(d.run(rig.stop))
    await wait_until(lambda: d.in_flight == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert d.in_flight == 0
    assert await rig.states("a1") == [("pending", 0)]


async def test_a_raising_sender_is_a_failure_and_its_message_is_not_stored(rig: Rig) -> None:
    rig.sender.raise_for["A"] = RuntimeError("https://hooks.example/T0/SECRET-TOKEN")
    await rig.commit("A", "a1")
    d = rig.start(rand=lambda: 1.0)
    await wait_until(lambda: d.failed == 1)
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert a1.last_error == "sender raised RuntimeError"


async def test_a_render_error_is_a_failure(rig: Rig) -> None:
    def broken(url_key: str, events: Sequence[Event]) -> RenderedMessage:
        raise KeyError("template")

    d = Dispatcher(
        store=rig.store, sender=rig.sender, render=broken, clock=rig.clock, rand=lambda: 1.0
    )
    rig.dispatchers.append(d)
    await rig.commit("A", "a1")
    await d.drain(1.0)
    assert rig.sender.calls == []
    (a1,) = await rig.store.deliveries_for(["a1"])
    assert (a1.state, a1.last_error) == ("pending", "render failed: KeyError")


async def test_on_result_reports_each_attempt_and_its_errors_are_contained(rig: Rig) -> None:
    results: list[tuple[str, bool, float]] = []

    def hook(url_key: str, ok: bool, seconds: float) -> None:
        results.append((url_key, ok, seconds))
        raise ValueError("metrics broke")

    rig.sender.fail_times["A"] = 1
    await rig.commit("A", "a1")
    d = rig.start(on_result=hook)
    await wait_until(lambda: d.sent == 1)
    assert [(u, ok) for u, ok, _ in results] == [("A", False), ("A", True)]
    assert all(s >= 0 for _, _, s in results)


async def test_a_store_failure_does_not_kill_the_loop(rig: Rig) -> None:
    """The store is closed under the running loop: it logs, backs off, and keeps running."""
    d = rig.start(retry_base_s=0.05)
    with capture_logs() as logs:
        await rig.store.close()
        d.wake()
        await wait_until(lambda: any(e["event"] == "delivery.store_failed" for e in logs))
    assert not rig.tasks[0].done()
    rig.stop.set()
    await asyncio.wait_for(rig.tasks[0], 2)


class SnapshotReads:
    """The store, but an outbox read can be held after it took its snapshot: PostgreSQL
    answers from a snapshot while another connection records a send's outcome."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.hold_next = False
        self.reading = asyncio.Event()
        self.proceed = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def due_deliveries(self, now: object, limit: int = 100) -> object:
        rows = await self._store.due_deliveries(now, limit=limit)  # type: ignore[arg-type]
        if self.hold_next:
            self.hold_next = False
            self.reading.set()
            await self.proceed.wait()
        return rows


async def test_a_send_finishing_during_an_outbox_read_is_not_sent_again(rig: Rig) -> None:
    # Regression: the read returned the head that was just sent (its snapshot predates
    # mark_sent); the URL was idle again by then, so the message went out twice.
    store = SnapshotReads(rig.store)
    rig.sender.held["A"] = asyncio.Event()
    await rig.commit("A", "a1")
    await rig.commit("A", "a2")
    d = Dispatcher(
        store=store,  # type: ignore[arg-type]
        sender=rig.sender,
        render=render,
        clock=rig.clock,
        rand=lambda: 0.0,
    )
    rig.dispatchers.append(d)
    rig.tasks.append(asyncio.create_task(d.run(rig.stop)))
    await wait_until(lambda: rig.sender.calls == [("A", "a1")])
    store.hold_next = True
    d.wake()  # a round reads the outbox while a1 is still being sent
    await store.reading.wait()
    rig.sender.held["A"].set()  # a1 goes through and is recorded during that read
    await wait_until(lambda: d.sent == 1)
    store.proceed.set()
    await wait_until(lambda: d.sent == 2)
    assert rig.sender.titles("A", delivered=False) == ["a1", "a2"]
