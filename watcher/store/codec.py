"""How the stores write domain values as JSON, in one place for every backend.

The ``Store`` port speaks ``WatchState``, ``TargetHealth`` and known-workflow sets; the
stores keep documents in JSON columns. Every backend uses these functions, so a state
written by one store reads back the same in another (moving an install from SQLite to
PostgreSQL copies documents verbatim), and the key names of the small documents (target
health, a discovery's known ids) are defined once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

from watcher.core.health import TargetHealth
from watcher.core.ports import UrlKeys
from watcher.core.state import WatchState

# A state whose workflow has more points than this is serialised in a worker thread, so
# thousands of points never block the event loop (the runtime evaluates such workflows in a
# thread too: watcher.runtime.poller.LARGE_WORKFLOW_POINTS).
LARGE_STATE_POINTS = 200


# One encoder for every document: json.dumps with options builds a new encoder per call,
# a tenth of the cost of a state's JSON on the changed-poll path.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON that refuses NaN and non-JSON types (every store serialises alike)."""
    return _ENCODER.encode(value)


def state_text(state: WatchState) -> str:
    return dumps(state.to_json())


async def encode_state(state: WatchState | None) -> str | None:
    """The JSON text of a state (None stays None), off the loop when the state is large.

    Runs before a store opens its transaction, so the write lock is never held for it.
    """
    if state is None:
        return None
    if len(state.workflow.points) > LARGE_STATE_POINTS:
        return await asyncio.to_thread(state_text, state)
    return state_text(state)


def decode_state(data: str | Mapping[str, Any]) -> WatchState:
    """A stored state (JSON text or an already parsed document)."""
    return WatchState.from_json(json.loads(data) if isinstance(data, str) else data)


def health_key(target: str) -> str:
    """Where a target's health document lives in the key-value table."""
    return f"health/{target}"


def health_doc(value: TargetHealth) -> dict[str, Any]:
    return value.to_json()


def decode_health(data: Mapping[str, Any]) -> TargetHealth:
    return TargetHealth.from_json(data)


URL_KEYS_KEY = "notify/url_keys"  # the UrlKeys document in the key-value table


def url_keys_doc(value: UrlKeys) -> dict[str, Any]:
    return {"salt": value.salt, "fingerprints": dict(sorted(value.fingerprints.items()))}


def decode_url_keys(data: Mapping[str, Any]) -> UrlKeys:
    return UrlKeys(salt=str(data["salt"]), fingerprints=dict(data.get("fingerprints") or {}))


def known_doc(ids: Iterable[str]) -> dict[str, Any]:
    """A discovery's known workflow ids as stored (sorted, so rewrites are stable)."""
    return {"known": sorted(set(ids))}


def decode_known(data: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(i) for i in data.get("known", []))
