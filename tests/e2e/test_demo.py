"""`make demo` runs `cce-upgrade-watcher demo`: a scripted upgrade, notifications on stdout."""

from __future__ import annotations

import asyncio
import sys

import pytest


@pytest.mark.slow
async def test_demo_prints_each_notification_of_a_whole_upgrade() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        "demo",
        "--speed",
        "3",
        "--timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 90)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, err
    titles = [line for line in out.splitlines() if line.startswith("[")]
    # One title per delivered message, in the order the upgrade happened. At this speed a
    # short Running state can fall between two polls (the engine then reports only the
    # success, from the cloud's timestamps), so only the milestones are asserted.
    assert titles[0].startswith("[INFO]") and "Found upgrade" in titles[0]
    for milestone in (
        "Pre-check task succeeded",
        "Cluster upgrade task succeeded",
        "Post-check task succeeded",
    ):
        assert milestone in out
    assert out.index("Pre-check task succeeded") < out.index("Cluster upgrade task succeeded")
    assert titles[-1].startswith("[SUCCESS]")
    assert "Upgrade v" in out.split("Post-check task succeeded")[-1]  # the workflow's own
    assert "Scenario finished" in out
    assert "Traceback" not in err


@pytest.mark.slow
async def test_demo_with_an_unknown_scenario_exits_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        "demo",
        "--scenario",
        "no_such_scenario",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "no_such_scenario" in err.decode()
    assert "Traceback" not in (out + err).decode()
