"""Injected failures for testing a client's error handling: status codes, throttling,
slowness, garbage bodies. Each fault matches paths by substring and may be limited to a
number of requests. (Token expiry is not stored here: it acts once, on the Authenticator.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("status", "throttle", "slow", "garbage", "token_expiry")


@dataclass(slots=True)
class Fault:
    kind: str
    status: int = 503
    count: int | None = None  # None: every matching request until cleared
    retry_after: float | None = None
    delay: float = 1.0
    path_contains: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_fault(raw: dict[str, Any]) -> Fault:
    """Build a fault from the control API's JSON; raises ValueError on a bad one."""
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    unknown = set(raw) - {"kind", "status", "count", "retry_after", "delay", "path_contains"}
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    default_status = 429 if kind == "throttle" else 200 if kind == "garbage" else 503
    count = raw.get("count")
    fault = Fault(
        kind=kind,
        status=int(raw.get("status") or default_status),
        count=None if count is None else int(count),
        retry_after=None if raw.get("retry_after") is None else float(raw["retry_after"]),
        delay=float(raw.get("delay", 1.0)),
        path_contains=str(raw.get("path_contains") or ""),
    )
    if kind == "throttle" and fault.retry_after is None:
        fault.retry_after = 1.0
    if fault.count is not None and fault.count < 1:
        raise ValueError("count must be at least 1")
    return fault


class Faults:
    """Active faults, first match wins; a counted fault disappears when used up."""

    def __init__(self) -> None:
        self.active: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self.active.append(fault)

    def clear(self) -> int:
        count = len(self.active)
        self.active.clear()
        return count

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
