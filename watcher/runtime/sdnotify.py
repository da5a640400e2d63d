"""A dependency-free sd_notify client: tells systemd we are ready, alive, reloading or stopping.

Why this module exists: the unit is `Type=notify` with `WatchdogSec=` (SPEC.md 10), so the
daemon reports READY=1 once it serves, pings WATCHDOG=1 while its scheduler is healthy, and says
RELOADING=1/STOPPING=1 around SIGHUP and shutdown. The protocol is one datagram of
newline-separated `KEY=VALUE` lines sent to the unix socket named by $NOTIFY_SOCKET (a path, or
an abstract socket written with a leading '@'); see sd_notify(3).

Every function is a no-op returning False when $NOTIFY_SOCKET is unset (a terminal, a container,
a test), and a send that fails returns False instead of raising: a missed ping must never crash
the daemon, and systemd's watchdog will notice a daemon that really stopped pinging.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval_s",
]


def _address() -> str | None:
    """Return the socket address from $NOTIFY_SOCKET, or None when unset or unsupported."""
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # unset, or a vsock address that this client does not speak


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def notify(*lines: str) -> bool:
    """Send `KEY=VALUE` lines as one datagram. Return True when it was sent."""
    address = _address()
    if address is None or not lines:
        return False
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError:
        return False
    return True


def ready(status: str | None = None) -> bool:
    """READY=1: start-up (or a reload) finished and the daemon serves."""
    lines = ["READY=1"]
    if status is not None:
        lines.append(f"STATUS={_one_line(status)}")
    return notify(*lines)


def reloading(status: str | None = None) -> bool:
    """RELOADING=1 with MONOTONIC_USEC (required by Type=notify-reload); send READY=1 after."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = ["RELOADING=1", f"MONOTONIC_USEC={usec}"]
    if status is not None:
        lines.append(f"STATUS={_one_line(status)}")
    return notify(*lines)


def stopping(status: str | None = None) -> bool:
    """STOPPING=1: shutdown began; systemd stops expecting watchdog pings."""
    lines = ["STOPPING=1"]
    if status is not None:
        lines.append(f"STATUS={_one_line(status)}")
    return notify(*lines)


def watchdog() -> bool:
    """WATCHDOG=1: the daemon is alive. Send only while the scheduler is healthy."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """STATUS=...: one line that `systemctl status` shows."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog_interval_s() -> float | None:
    """Return systemd's watchdog timeout in seconds, or None when the watchdog is off.

    Reads $WATCHDOG_USEC, honouring $WATCHDOG_PID (set when the variable was meant for another
    process). Ping at half this interval or more often, as sd_watchdog_enabled(3) advises.
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
