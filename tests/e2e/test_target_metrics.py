"""Per-target up/last-success gauges through the whole daemon: set by real polls of the
simulator, 0 while the cloud refuses, and removed when the target is no longer polled (so
the "no successful poll" alert cannot fire for a finished or removed target)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness import Harness, running
from tests.e2e.test_scenarios import play

pytestmark = pytest.mark.slow

UP = "cce_watcher_target_up"
LAST = "cce_watcher_target_last_success_timestamp_seconds"


def _gauge(h: Harness, name: str, target: str) -> float | None:
    return h.daemon.registry.get_sample_value(name, {"target": target})


async def test_gauges_follow_polls_and_go_when_the_only_workflow_is_done(tmp_path: Path) -> None:
    async with running(tmp_path, ["clean_upgrade"]) as h:
        (target,) = [t["name"] for t in h.sim.targets()]
        await h.settle()
        assert _gauge(h, UP, target) == 1
        last = _gauge(h, LAST, target)
        assert last is not None and abs(last - time.time()) < 60  # wall clock, for time()

        h.sim.add_fault("status", status=401)  # the cloud refuses the signature
        await h.wait_polled()
        assert _gauge(h, UP, target) == 0
        assert _gauge(h, LAST, target) == last
        polls = h.daemon.registry.get_sample_value(
            "cce_watcher_polls_total", {"target": target, "result": "auth"}
        )
        assert polls is not None and polls >= 1
        h.sim.clear_faults()

        await play(h, "clean_upgrade")
        for _ in range(2):  # the terminal poll, then the one last poll that stops the job
            await h.settle()
        assert not h.daemon.watches
        assert _gauge(h, UP, target) is None
        assert _gauge(h, LAST, target) is None


async def test_a_target_removed_by_reload_loses_its_gauges(tmp_path: Path) -> None:
    async with running(tmp_path, ["clean_upgrade"]) as h:
        (target,) = [t["name"] for t in h.sim.targets()]
        await h.settle()
        assert _gauge(h, UP, target) == 1
        old = h.daemon.settings
        renamed = [t.model_copy(update={"name": "renamed"}) for t in old.targets]
        await h.daemon.reload(old.model_copy(update={"targets": renamed}))
        await h.settle()
        assert _gauge(h, UP, target) is None
        assert _gauge(h, LAST, target) is None
        assert _gauge(h, UP, "renamed") == 1
