"""Injected failures for testing a client's error handling: status codes, throttling,
slowness, garbage bodies, and any body a test supplies (``body``: nested arrays, a
workflow with thousands of points, out-of-range times) or any raw ``Retry-After`` header
(``retry_after_header``: ``1e300``, ``nan``, an HTTP date, garbage). Each fault matches
paths by substring and may be limited to a number of requests. Clearing the faults also
ends the slow answers under way, so a test can hold a request for as long as it needs and
release it, instead of guessing a delay that is long enough on a loaded machine. (Token
expiry is not stored here: it acts once, on the Authenticator.)
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("status", "throttle", "slow", "garbage", "body", "token_expiry")
MAX_BODY = 16 * 1024 * 1024  # a test body, not a way to exhaust the simulator's memory


@dataclass(slots=True)
class Fault:
    kind: str
    status: int = 503
    count: int | None = None  # None: every matching request until cleared
    retry_after: float | None = None
    delay: float = 1.0
    path_contains: str = ""
    body: str | None = None  # kind "body": served verbatim as application/json
    retry_after_header: str | None = None  # sent as Retry-After verbatim (wins over retry_after)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.body is not None and len(self.body) > 200:
            out["body"] = f"<{len(self.body)} characters>"
        return out


def make_fault(raw: dict[str, Any]) -> Fault:
    """Build a fault from the control API's JSON; raises ValueError on a bad one."""
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    fields = {"kind", "status", "count", "retry_after", "delay", "path_contains"}
    unknown = set(raw) - fields - {"body", "retry_after_header"}
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    default_status = 429 if kind == "throttle" else 200 if kind in ("garbage", "body") else 503
    count = raw.get("count")
    fault = Fault(
        kind=kind,
        status=int(raw.get("status") or default_status),
        count=None if count is None else int(count),
        retry_after=None if raw.get("retry_after") is None else float(raw["retry_after"]),
        delay=float(raw.get("delay", 1.0)),
        path_contains=str(raw.get("path_contains") or ""),
        body=None if raw.get("body") is None else str(raw["body"]),
        retry_after_header=(
            None if raw.get("retry_after_header") is None else str(raw["retry_after_header"])
        ),
    )
    if kind == "body" and fault.body is None:
        raise ValueError("a body fault needs a body")
    if fault.body is not None and len(fault.body) > MAX_BODY:
        raise ValueError(f"body must be at most {MAX_BODY} characters")
    if kind == "throttle" and fault.retry_after is None and fault.retry_after_header is None:
        fault.retry_after = 1.0
    if fault.count is not None and fault.count < 1:
        raise ValueError("count must be at least 1")
    return fault


class Faults:
    """Active faults, first match wins; a counted fault disappears when used up."""

    def __init__(self) -> None:
        self.active: list[Fault] = []
        self._cleared = asyncio.Event()  # set, then replaced, by clear()

    def add(self, fault: Fault) -> None:
        self.active.append(fault)

    def clear(self) -> int:
        count = len(self.active)
        self.active.clear()
        self._cleared.set()
        self._cleared = asyncio.Event()
        return count

    async def stall(self, fault: Fault) -> None:
        """Hold a request for the slow fault's delay, or until the faults are cleared."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._cleared.wait(), fault.delay)

    def take(self, path: str) -> Fault | None:
        """The fault for this request, consuming one of its uses."""
        for fault in self.active:
            if fault.path_contains in path:
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.active.remove(fault)
                return fault
        return None
