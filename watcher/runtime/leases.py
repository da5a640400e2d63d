"""Which targets this replica polls: leases in the shared store, or everything when alone.

Why this module exists: replicas on one PostgreSQL store split the targets with no idle
standby (issue 11.2). Each target (lease key = its name) has one lease row; the replica that
holds it polls it and fences every commit with the lease's epoch, so a replica that was
paused past its lease can never write over its successor. ``LeaseKeeper`` is the root task
that keeps this replica's share: every ``lease_s / 3`` it beats its heartbeat, renews what
it holds in one statement, takes free or expired leases up to its fair share
(ceil(keys / live replicas)) and gives back a surplus gently (half the share per
round at most), so a new replica gets work without a stampede. ``lease_s`` is the takeover
bound: a lease row is valid for two rounds (``validity_s`` = 2/3 of ``lease_s``; one missed
renewal is survived), so a dead replica's leases lapse by the database clock at most
``validity_s`` after its last renewal and a survivor's next round, at most ``lease_s / 3``
later, takes them: within ``lease_s`` of the death.
``SoleHolder`` is the single-process equivalent (SQLite, memory): it holds every key and
does no I/O.

Renewal must never wait for the polls (at 1,000 targets it did, and every lease lapsed):
the store runs the keeper's statements on a connection of its own, a round renews before
anything else, and preparing newly taken keys (``on_acquired``: reloading their state
from the store) runs beside the rounds, not inside one. A key being prepared is held but
not yet ``holds``: its polls start once its state is loaded.

The keeper also renews this replica's delivery claims each round, so a send that takes long
keeps its claim while the replica lives, and a dead replica's claims return to the queue
after ``validity_s`` (the claim time it gives the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import structlog

from watcher.core.ports import Fence, LeaseStore, Store

log = structlog.get_logger(__name__)

RELEASE_PER_ROUND = 2  # surplus leases given back per round at least ...
RELEASE_SHARE = 0.5  # ... or this part of the fair share, so 10,000 keys rebalance in rounds
SHOWN_KEYS = 10  # keys named in one log line; the rest are counted

OnKeys = Callable[[list[str]], Awaitable[None] | None]


class Leases(Protocol):
    """What the runtime asks about leases (``LeaseKeeper`` or ``SoleHolder``)."""

    def holds(self, key: str) -> bool: ...
    def fence(self, key: str) -> Fence | None: ...
    def lost(self, key: str) -> None: ...
    def problem(self) -> str | None: ...


class SoleHolder:
    """One process, one writer: every key is held, commits carry no fence, no I/O."""

    def holds(self, key: str) -> bool:
        del key
        return True

    def fence(self, key: str) -> Fence | None:
        del key
        return None

    def lost(self, key: str) -> None:
        del key  # cannot happen: nothing is fenced

    def problem(self) -> str | None:
        return None


def validity(lease_s: float) -> float:
    """A lease row's validity for a takeover bound of ``lease_s`` (two rounds)."""
    return lease_s * 2 / 3


class LeaseKeeper:
    """This replica's leases in a ``LeaseStore``; see the module docstring."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        replica_id: str,
        lease_s: float,
        keys: Callable[[], Iterable[str]],
        on_acquired: OnKeys | None = None,
        on_lost: OnKeys | None = None,
        release_per_round: int = RELEASE_PER_ROUND,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.replica_id = replica_id
        self.lease_s = lease_s
        self._keys = keys
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._release_per_round = release_per_round
        self._monotonic = monotonic
        self.held: dict[str, int] = {}  # key -> epoch it was taken with
        # Local deadline of every held lease (monotonic): the last successful renewal's
        # start plus validity_s, never later than the database's own expiry.
        self._valid_until = 0.0
        self._problem: str | None = None
        self._preparing: set[str] = set()  # held, state not loaded yet: not polled
        self._tasks: set[asyncio.Task[None]] = set()  # on_acquired calls in flight
        self.rounds = 0

    @property
    def period_s(self) -> float:
        return self.lease_s / 3

    @property
    def validity_s(self) -> float:
        """How long a renewed lease row stays valid: two rounds (see the module)."""
        return validity(self.lease_s)

    # -- what the runtime asks ---------------------------------------------------------

    def holds(self, key: str) -> bool:
        """True while this replica holds ``key``'s lease (by its own conservative clock)
        and the runtime has loaded its state."""
        return (
            key in self.held
            and key not in self._preparing
            and self._monotonic() < self._valid_until
        )

    def fence(self, key: str) -> Fence:
        """The token a commit of ``key`` carries; epoch 0 (always refused) if not held."""
        return Fence(key, self.replica_id, self.held.get(key, 0))

    def lost(self, key: str) -> None:
        """A fenced commit of ``key`` was refused: stop polling it (logged once)."""
        self._preparing.discard(key)
        if self.held.pop(key, None) is not None:
            log.warning("lease.lost", keys=[key], reason="a commit was fenced off")

    def problem(self) -> str | None:
        """Why the keeper cannot do its job (``/readyz``), or None."""
        return self._problem

    # -- the root task -----------------------------------------------------------------

    async def run(self, first_delay_s: float = 0.0) -> None:
        """A round every ``lease_s / 3`` until cancelled; a failed round is logged once and
        the held leases are dropped when their local deadline passes."""
        await asyncio.sleep(first_delay_s)
        try:
            while True:
                started = self._monotonic()
                await self.round(wait=False)
                # Rounds keep their rhythm: a slow round shortens the pause after it.
                await asyncio.sleep(max(0.0, self.period_s - (self._monotonic() - started)))
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def round(self, *, wait: bool = True) -> None:
        """One round: renew, heartbeat, count, take or release, renew claims. Never raises
        (except cancellation); a store failure is kept for ``problem``. ``wait``: also wait
        until the keys taken in this round are prepared (``on_acquired``); the rounds of
        ``run`` do not, so a long preparation never delays a renewal."""
        started = self._monotonic()
        try:
            await self._round(started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if self._problem is None:
                log.error("lease.store_failed", error=reason)
            self._problem = f"lease keeper cannot reach the store: {reason}"
            if self.held and self._monotonic() >= self._valid_until:
                await self._drop(sorted(self.held), "not renewed in time")
            return
        if self._problem is not None:
            log.info("lease.store_recovered")
            self._problem = None
        self.rounds += 1
        if wait:
            await self.settled()

    async def settled(self, timeout_s: float | None = None) -> bool:
        """Wait until every key taken so far is prepared (or given back); False when
        ``timeout_s`` passed first (the preparations go on: nothing is cancelled)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while self._tasks:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.wait(list(self._tasks), timeout=remaining)
        return True

    async def _round(self, started: float) -> None:
        store, me = self.store, self.replica_id
        if self.held:  # first: nothing else in the round may make a renewal late
            lapsed = self._monotonic() >= self._valid_until
            renewed = await store.renew_leases(me, sorted(self.held), self.validity_s)
            gone = sorted(k for k in self.held if k not in renewed)
            self._valid_until = started + self.validity_s
            if gone:
                await self._drop(gone, "taken by another replica or expired")
            self.held = {k: renewed[k] for k in self.held if k in renewed}
            if lapsed and self.held:
                # Our own clock had given them up (a late round): polls of them were
                # skipped and parked. Nobody took them, so resume them as if just taken.
                self._prepare(sorted(k for k in self.held if k not in self._preparing))
        else:
            self._valid_until = started + self.validity_s
        await store.heartbeat(me, self.validity_s)
        wanted = sorted(set(self._keys()))
        unwanted = sorted(k for k in self.held if k not in set(wanted))
        if unwanted:  # targets removed by a reload
            await self._give_back(unwanted)
        live = max(1, await store.live_replicas())
        share = math.ceil(len(wanted) / live)
        if len(self.held) < share:
            free = [k for k in wanted if k not in self.held]
            taken = await store.take_leases(me, free, self.validity_s, share - len(self.held))
            if taken:
                self.held.update(taken)
                _log_keys("lease.acquired", taken, share=share, replicas=live)
                self._prepare(sorted(taken))
        elif len(self.held) > share:
            per_round = max(self._release_per_round, math.ceil(share * RELEASE_SHARE))
            surplus = sorted(self.held)[share:][:per_round]
            await self._give_back(surplus)
        await store.renew_claims(me, self.validity_s)

    def _prepare(self, keys: list[str]) -> None:
        """Have the runtime load ``keys``' state beside the rounds; polled once loaded."""
        if self._on_acquired is None or not keys:
            return
        self._preparing.update(keys)
        task = asyncio.get_running_loop().create_task(self._acquired(keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acquired(self, keys: list[str]) -> None:
        """Let the runtime reload those targets from the store before polling them; if it
        cannot, give them back (polling from a stale snapshot would repeat old news)."""
        assert self._on_acquired is not None
        try:
            await _call(self._on_acquired, keys)
        except Exception as exc:
            log.error("lease.takeover_failed", keys=keys[:SHOWN_KEYS], error=type(exc).__name__)
            with contextlib.suppress(Exception):  # the lease lapses by itself otherwise
                await self._give_back([k for k in keys if k in self.held])
        finally:
            self._preparing.difference_update(keys)

    async def _give_back(self, keys: list[str]) -> None:
        """Stop polling ``keys`` first, then free their leases for another replica."""
        await self._drop(keys, "released")
        await self.store.release_leases(self.replica_id, keys)

    async def _drop(self, keys: list[str], reason: str) -> None:
        for key in keys:
            self.held.pop(key, None)
        self._preparing.difference_update(keys)
        _log_keys("lease.lost" if reason != "released" else "lease.released", keys, reason=reason)
        if self._on_lost is not None:
            try:
                await _call(self._on_lost, keys)
            except Exception as exc:
                log.error("lease.on_lost_failed", error=type(exc).__name__)

    async def release_all(self) -> None:
        """Shutdown: give every lease back and leave the live replicas, so the others take
        the whole share over at their next round."""
        for task in list(self._tasks):
            task.cancel()
        keys = sorted(self.held)
        self.held.clear()
        if keys:
            await self.store.release_leases(self.replica_id, keys)
            log.info("lease.released_all", count=len(keys))
        await self.store.leave(self.replica_id)


def make_leases(
    store: Store,
    *,
    replica_id: str,
    lease_s: float,
    keys: Callable[[], Iterable[str]],
    on_acquired: OnKeys | None = None,
    on_lost: OnKeys | None = None,
) -> LeaseKeeper | SoleHolder:
    """A keeper on a store that has leases (PostgreSQL), else the sole holder. The store's
    delivery claims are made in this replica's name for ``validity(lease_s)`` (renewed each
    round)."""
    if not isinstance(store, LeaseStore):
        return SoleHolder()
    store.claim_as(replica_id, validity(lease_s))
    return LeaseKeeper(
        store,
        replica_id=replica_id,
        lease_s=lease_s,
        keys=keys,
        on_acquired=on_acquired,
        on_lost=on_lost,
    )


async def _call(callback: OnKeys, keys: list[str]) -> None:
    result = callback(keys)
    if inspect.isawaitable(result):
        await result


def _log_keys(event: str, keys: Iterable[str], **extra: object) -> None:
    names = sorted(keys)
    log.info(event, keys=names[:SHOWN_KEYS], count=len(names), **extra)
