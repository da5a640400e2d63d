"""watcher.runtime.sdnotify against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.runtime import sdnotify


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound in tmp_path and announced in NOTIFY_SOCKET."""
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    with sock:
        yield sock


def _lines(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_with_status(receiver: socket.socket) -> None:
    assert sdnotify.ready(status="watching 3 targets\nsecond line") is True
    assert _lines(receiver) == ["READY=1", "STATUS=watching 3 targets second line"]


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (sdnotify.ready, ["READY=1"]),
        (sdnotify.watchdog, ["WATCHDOG=1"]),
        (sdnotify.stopping, ["STOPPING=1"]),
        (lambda: sdnotify.status("polling"), ["STATUS=polling"]),
        (lambda: sdnotify.notify("READY=1", "MAINPID=42"), ["READY=1", "MAINPID=42"]),
    ],
    ids=["ready", "watchdog", "stopping", "status", "notify"],
)
def test_messages_arrive_as_sent(
    receiver: socket.socket, send: object, expected: list[str]
) -> None:
    assert callable(send) and send() is True
    assert _lines(receiver) == expected


def test_reloading_carries_the_monotonic_clock(receiver: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = _lines(receiver)
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_stopping_with_status(receiver: socket.socket) -> None:
    assert sdnotify.stopping(status="draining deliveries")
    assert _lines(receiver) == ["STOPPING=1", "STATUS=draining deliveries"]


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"cce-watcher-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready() and sdnotify.watchdog()
        assert _lines(sock) == ["READY=1"]
        assert _lines(sock) == ["WATCHDOG=1"]


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")  # not a unix socket: unsupported
    assert sdnotify.stopping() is False


def test_a_vanished_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sdnotify.watchdog() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("60000000", "self", 60.0),
        ("60000000", "1", None),  # meant for another process
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert sdnotify.watchdog_interval_s() == expected
