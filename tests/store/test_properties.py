"""Property: whatever the sequence of polls, dedup keys are stored once and deliveries
carry only events that were new in their own commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store.factories import make_event, make_state
from watcher.core.ports import PlannedDelivery
from watcher.store.sqlite import SqliteStore

KEYS = st.sampled_from([f"k{i}" for i in range(8)])
URLS = st.sampled_from(["A", "B", "C"])

poll = st.tuples(
    st.sampled_from(["wf-1", "wf-2"]),
    st.lists(KEYS, max_size=5),  # events of this poll (may repeat, may be known)
    st.lists(st.tuples(URLS, st.lists(KEYS, max_size=4)), max_size=3),  # planned deliveries
)


async def _run(path: Path, polls: list[tuple[str, list[str], list[tuple[str, list[str]]]]]) -> None:
    store = await SqliteStore.open(path)
    seen: set[str] = set()
    try:
        for workflow_key, keys, planned in polls:
            events = [make_event(k) for k in keys]
            deliveries = [PlannedDelivery(url, tuple(ks)) for url, ks in planned]
            before = {d.id for d in await store.list_deliveries(limit=10_000)}

            new = await store.commit_poll(
                workflow_key, make_state(seq=len(seen)), events, deliveries
            )

            expected_new = list(dict.fromkeys(k for k in keys if k not in seen))
            assert [e.dedup_key for e in new] == expected_new
            new_keys = set(expected_new)
            seen |= new_keys
            created = [d for d in await store.list_deliveries(limit=10_000) if d.id not in before]
            expected_deliveries = [
                (url, [k for k in dict.fromkeys(ks) if k in new_keys]) for url, ks in planned
            ]
            assert sorted((d.url_key, [e.dedup_key for e in d.events]) for d in created) == sorted(
                (url, ks) for url, ks in expected_deliveries if ks
            )
    finally:
        await store.close()

    with sqlite3.connect(path) as conn:
        stored = [r[0] for r in conn.execute("SELECT dedup_key FROM events")]
        assert len(stored) == len(set(stored)) and set(stored) == seen
        for (keys_json,) in conn.execute("SELECT event_keys FROM deliveries"):
            keys = json.loads(keys_json)
            assert keys and len(keys) == len(set(keys)) and set(keys) <= seen
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(poll, max_size=8))
def test_random_polls_never_store_a_key_twice_nor_deliver_an_old_event(
    polls: list[tuple[str, list[str], list[tuple[str, list[str]]]]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(Path(tmp) / "p.db", polls))
