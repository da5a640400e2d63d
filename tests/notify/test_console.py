"""The console:// scheme: registered once per process, prints from a worker thread."""

from __future__ import annotations

import apprise
import pytest
from apprise.manager_plugins import NotificationManager

from watcher.notify import console


def test_register_is_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    console.register()
    console.register()
    assert console.SCHEME in NotificationManager()
    assert "already defined" not in caplog.text


async def test_prints_title_and_body(capfd: pytest.CaptureFixture[str]) -> None:
    console.register()
    apobj = apprise.Apprise()
    assert apobj.add("console://")
    result = await apobj.async_notify(title="Hello", body="line 1\nline 2", notify_type="success")
    assert bool(result)
    out = capfd.readouterr().out
    assert "[SUCCESS] Hello\nline 1\nline 2\n" in out
