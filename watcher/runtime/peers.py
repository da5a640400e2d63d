"""Other replicas' commits, heard through the store (PostgreSQL LISTEN/NOTIFY).

Why this module exists: with replicas splitting the targets, each one polls only its share,
yet ``/api/v1/workflows``, the event stream and the status page on ANY replica must show
everything, and a delivery committed by one replica should go out without waiting for the
dispatcher's safety-net interval. Every commit notifies its workflow key; ``PeerCommits``
turns each notification into: a wake of the outbox and of the feed pump, and, for a workflow
of a target this replica does not hold, a refresh of its view from the store (``adopt``).
An empty key (the listener has just (re)connected and may have missed commits) refreshes
every workflow of targets held elsewhere.

The callback side (``heard``) never awaits: notifications arrive on the listener's task and
are folded into a set, so a burst of commits costs one read per workflow, not one per commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from watcher.core.ports import Store
from watcher.core.state import WatchState
from watcher.runtime.registry import KeyKind, WatchKey

log = structlog.get_logger(__name__)

RETRY_S = 1.0  # after a failed refresh read


class PeerCommits:
    """Notifications in, wake-ups and view refreshes out; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        wake: Callable[[], None],
        holds: Callable[[str], bool],
        adopt: Callable[[str, WatchState | None], None],
    ) -> None:
        self._store = store
        self._wake = wake
        self._holds = holds
        self._adopt = adopt
        self._keys: set[str] = set()
        self._everything = False
        self._ready = asyncio.Event()
        self.refreshed = 0

    def heard(self, key: str) -> None:
        """One notification (``""``: anything may have changed). Never blocks."""
        self._wake()
        if key == "":
            self._everything = True
        else:
            parsed = WatchKey.decode(key)
            if parsed is None or parsed.kind is not KeyKind.WORKFLOW:
                return  # a target's health events, the watcher's own: nothing to show
            if self._holds(parsed.target):
                return  # this replica polls it: its view is already current
            self._keys.add(key)
        self._ready.set()

    async def run(self) -> None:
        """Refresh what was heard, until cancelled; a failed read is retried."""
        failing = False
        while True:
            await self._ready.wait()
            self._ready.clear()
            everything, keys = self._everything, self._keys
            self._everything, self._keys = False, set()
            try:
                await self._refresh(everything, keys)
            except Exception as exc:
                if not failing:
                    log.warning("peers.refresh_failed", error=type(exc).__name__)
                failing = True
                self._everything = self._everything or everything
                self._keys |= keys
                self._ready.set()
                await asyncio.sleep(RETRY_S)
                continue
            if failing:
                log.info("peers.refresh_recovered")
            failing = False

    async def _refresh(self, everything: bool, keys: set[str]) -> None:
        if everything:
            states = await self._store.load_all_states()
            for text, state in sorted(states.items()):
                self._maybe_adopt(text, state)
            return
        for text in sorted(keys):
            self._maybe_adopt(text, await self._store.load_state(text))

    def _maybe_adopt(self, text: str, state: WatchState | None) -> None:
        parsed = WatchKey.decode(text)
        if parsed is None or parsed.kind is not KeyKind.WORKFLOW or self._holds(parsed.target):
            return  # held now (a takeover while reading): the poll owns its state
        self._adopt(text, state)
        self.refreshed += 1
