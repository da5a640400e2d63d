"""Housekeeping: the root task that prunes old deliveries and events.

Why this module exists: retention is its own small job; it runs every ``HOUSEKEEPING_S``
and deletes in small batches so polls and commits are never held up for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from watcher.core.ports import Clock

log = structlog.get_logger(__name__)

HOUSEKEEPING_S = 6 * 3600.0  # how often old deliveries and events are pruned


class Prunable(Protocol):
    """The part of the Store port housekeeping uses."""

    async def prune(self, before: datetime) -> int: ...


async def prune(store: Prunable, clock: Clock, retention: timedelta) -> int:
    """Drop sent/dead deliveries and unreferenced events older than ``retention``."""
    before = clock.now() - retention
    total = 0
    while (gone := await store.prune(before)) > 0:
        total += gone
        await asyncio.sleep(0)
    if total:
        log.info("store.pruned", rows=total, before=before.isoformat())
    return total


async def run(store: Prunable, clock: Clock, retention: Callable[[], timedelta]) -> None:
    """Prune now, then every ``HOUSEKEEPING_S`` (``retention`` is re-read: a reload may
    change it)."""
    while True:
        await prune(store, clock, retention())
        await asyncio.sleep(HOUSEKEEPING_S)
