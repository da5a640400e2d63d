"""The lifecycle, driven directly: signals only set events, supervise() reloads on request
and fails on the first crashed root task, shutdown phases are bounded and independent, and
the real App releases exactly what it acquired (also after a start that failed halfway)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.e2e.harness import running
from watcher.runtime import lifecycle
from watcher.runtime.lifecycle import RootTaskCrashedError, RootTasks, supervise


async def forever() -> None:
    await asyncio.Event().wait()


async def test_supervise_returns_on_stop_and_a_task_ending_then_is_no_crash() -> None:
    tasks = RootTasks()
    stopping, reload = asyncio.Event(), asyncio.Event()
    tasks.spawn("quick", asyncio.sleep(0))
    stopping.set()
    await asyncio.wait_for(
        supervise(tasks, stopping=stopping, reload_requested=reload, reload=forever), 1
    )


async def test_the_first_crashed_root_task_is_logged_and_raised() -> None:
    tasks = RootTasks()
    tasks.spawn("steady", forever())

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("lost")

    tasks.spawn("feed", boom())
    with capture_logs() as logs, pytest.raises(RootTaskCrashedError, match="feed"):
        await asyncio.wait_for(
            supervise(
                tasks,
                stopping=asyncio.Event(),
                reload_requested=asyncio.Event(),
                reload=forever,
            ),
            1,
        )
    [crash] = [e for e in logs if e["event"] == "daemon.task_crashed"]
    assert crash["task"] == "feed" and "lost" in crash["error"]
    await tasks.cancel("steady")
    assert tasks.names() == ["feed"]


async def test_a_reload_request_runs_the_reload_once_then_keeps_supervising() -> None:
    tasks = RootTasks()
    tasks.spawn("steady", forever())
    stopping, requested = asyncio.Event(), asyncio.Event()
    reloads: list[int] = []

    async def reload() -> None:
        reloads.append(1)
        stopping.set()  # the next wait sees the stop

    requested.set()
    await asyncio.wait_for(
        supervise(tasks, stopping=stopping, reload_requested=requested, reload=reload), 1
    )
    assert reloads == [1] and not requested.is_set()
    await tasks.cancel("steady")


async def test_signal_handlers_only_set_events_and_are_removed_after() -> None:
    stop, reload, poll = asyncio.Event(), asyncio.Event(), asyncio.Event()
    with lifecycle.signal_handlers(stop=stop.set, reload=reload.set, poll_now=poll.set):
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(asyncio.gather(reload.wait(), poll.wait()), 1)
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 1)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


async def test_a_hung_or_failing_phase_is_cut_off_and_the_next_one_still_runs() -> None:
    ran: list[str] = []

    async def fails() -> None:
        raise OSError("disk gone")

    async def last() -> None:
        ran.append("store")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with capture_logs() as logs:
        await lifecycle.phase("http", 0.1, forever)
        await lifecycle.phase("sender", 1.0, fails)
        await lifecycle.phase("store", 1.0, last)
    assert loop.time() - started < 1.0
    assert ran == ["store"]
    events = {(e["event"], e.get("phase")) for e in logs}
    assert ("shutdown.phase_timeout", "http") in events
    assert ("shutdown.phase_failed", "sender") in events


async def test_app_crashed_root_task_fails_supervision_and_stop_releases_everything(
    tmp_path: Path,
) -> None:
    """A real App: a crashed root task ends supervise() with an error (the CLI exits
    nonzero), and stop() then releases the parts in bounded phases."""
    async with running(tmp_path, ["seed"]) as h:
        app = h.daemon

        async def crash() -> None:
            raise RuntimeError("pump broke")

        app.root_tasks.spawn("crasher", crash())
        with pytest.raises(RootTaskCrashedError):
            await asyncio.wait_for(
                supervise(
                    app.root_tasks,
                    stopping=app.stopping,
                    reload_requested=app.reload_requested,
                    reload=app.reload_from_source,
                ),
                5,
            )
        assert {"dispatcher", "feed", "watchdog", "housekeeping"} <= set(app.root_tasks.names())
    # running() stopped the app: every root task ended, the store is closed.
    assert all(t.done() for t in app.root_tasks)
    assert app.scheduler.running is False


async def test_a_start_that_fails_halfway_releases_what_it_acquired(tmp_path: Path) -> None:
    def bad_url(raw: dict[str, Any]) -> None:
        raw["notify"]["urls"] = ["notaschema://nowhere"]

    with capture_logs() as logs, pytest.raises(Exception, match=r"(?i)url"):
        async with running(tmp_path, ["seed"], configure=bad_url):
            pass
    phases = [e.get("phase") for e in logs if e["event"].startswith("shutdown.phase")]
    assert "store" in phases and "session" in phases  # acquired before the sender failed


async def test_start_runs_without_the_cyclic_gc_and_what_it_built_is_frozen() -> None:
    """Start-up builds millions of long-lived objects at 100,000 targets: no collection
    then (docs-drafts/scale-100k.md), the collector back on and its result frozen after."""
    import gc

    seen: dict[str, Any] = {}

    class Fake:
        stopping = asyncio.Event()
        reload_requested = asyncio.Event()
        root_tasks = RootTasks()

        async def start(self) -> None:
            seen["during"] = gc.isenabled()
            self.built = [[i] for i in range(1000)]  # lives on: must be frozen after
            self.stopping.set()

        async def stop(self, *, grace_s: float = 0) -> None:
            seen["after"] = gc.isenabled()
            seen["frozen"] = gc.get_freeze_count()

        async def reload_from_source(self) -> None: ...
        def request_reload(self) -> None: ...
        def poll_all_now(self) -> None: ...

    try:
        await asyncio.wait_for(lifecycle.serve(Fake()), 5)
    finally:
        gc.enable()
        gc.unfreeze()
    assert seen["during"] is False
    assert seen["after"] is True
    assert seen["frozen"] >= 1000
    assert gc.get_threshold()[2] == lifecycle.FULL_GC_EVERY


def test_exit_after_stop_flushes_output_and_skips_the_teardown(tmp_path: Path) -> None:
    """The daemon's last step: buffered stdout and log-file lines reach their files, the
    exit code is the one given, and no atexit hook runs (the teardown is what it skips)."""
    import subprocess
    import sys

    log_file = tmp_path / "daemon.log"
    marker = tmp_path / "atexit-ran"
    script = f"""
import atexit, logging, pathlib, sys
from watcher.runtime import lifecycle
atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("ran"))
handler = logging.FileHandler({str(log_file)!r})
logging.getLogger().addHandler(handler)
logging.getLogger().warning("last line")
sys.stdout = open(sys.stdout.fileno(), "w", buffering=65536, closefd=False)
sys.stdout.write("daemon.stopped")
lifecycle.exit_after_stop(3)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "daemon.stopped"
    assert log_file.read_text() == "last line\n"
    assert not marker.exists()
