"""`check` says what it is waiting for: a line per failed or slow attempt, a last line.

Without it a `check` against an unreachable or hanging API was silent for minutes (three
attempts of up to the request timeout, per call, per target). The client reports every
attempt through its ``on_response`` hook; this counts them per host and prints one line
to stderr for each attempt that failed or was slow, and the summary line when the check
fails: the host, how many attempts, how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

SLOW_S = 2.0  # an attempt slower than this gets a line even when it succeeds


@dataclass
class CheckProgress:
    """Per-host attempt counts; ``say`` prints one line (to stderr in the CLI)."""

    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    attempts: dict[str, int] = field(default_factory=dict)
    last_host: str | None = None
    failed_host: str | None = None

    def response(
        self, host: str, route: str, status: int | None, code: str | None, seconds: float
    ) -> None:
        """The client's ResponseHook: called once per attempt, whatever its outcome."""
        count = self.attempts[host] = self.attempts.get(host, 0) + 1
        self.last_host = host
        failed = status is None or status == 429 or status >= 500
        if failed:
            self.failed_host = host
            why = "no answer" if status is None else f"HTTP {status}" + (f" {code}" if code else "")
            self.say(f"check: {host} {route}: attempt {count} failed after {seconds:.1f} s ({why})")
        elif seconds >= SLOW_S:
            self.say(f"check: {host} {route}: attempt {count} answered slowly ({seconds:.1f} s)")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def summary(self, host: str | None = None) -> str:
        """The last line of a failed check: host, attempts, elapsed time."""
        host = host or self.failed_host or self.last_host or "the API"
        count = self.attempts.get(host, 0)
        return (
            f"check: failed: {host}, {count} attempt{'s' if count != 1 else ''},"
            f" {self.elapsed():.1f} s elapsed"
        )
