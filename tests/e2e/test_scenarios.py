"""Every shipped scenario, stepped one timeline step at a time, through the whole daemon.

Expected messages follow SPEC.md section 3 (event table) and section 4 (one message per
workflow per poll; the default route sends everything but ``task.queued``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Harness, running

pytestmark = pytest.mark.slow

D, WS, WF, WR, WOK, WC = (
    "workflow.detected",
    "workflow.started",
    "workflow.failed",
    "workflow.resumed",
    "workflow.succeeded",
    "workflow.cancelled",
)
TS, TOK, TF, TR = "task.started", "task.succeeded", "task.failed", "task.retried"
WRB, TP = "workflow.rolled_back", "task.paused"
ROLLED_BACK_STORY = [
    [D],
    [WS, TS],
    [TOK],
    [TS],
    [TOK],
    [TS],  # Cluster Running
    [TF, WF],  # Cluster Failed -> Pending
    [WR, TS],  # Rollback Running: Pending -> Running
    [TOK, WRB],  # Rollback Success: rolled back (a warning), not a fresh failure
]

# One inner list per delivered message, in arrival order.
EXPECTED: dict[str, list[list[str]]] = {
    "clean_upgrade": [
        [D],
        [WS, TS],  # PreCheck Running
        [TOK],  # PreCheck Success
        [TS],  # Snapshot
        [TOK],
        # Cluster Queuing: task.queued only, routed nowhere -> no message
        [TS],  # Cluster Running
        [TOK],
        [TS],  # PostCheck
        [TOK, WOK],
    ],
    "precheck_fails": [[D], [WS, TS], [TF, WF]],
    "cluster_fails_rollback": [
        [D],
        [WS, TS],
        [TOK],
        [TS],
        [TOK],
        [TS],  # Cluster Running
        [TF, WF],  # Cluster Failed -> Pending
        [WR, TS],  # Rollback Running: Pending -> Running
        [TOK, WRB],  # Rollback Success; Cluster still Failed -> Pending: rolled back
    ],
    "rollback_ends": ROLLED_BACK_STORY,  # ... and the workflow ends (phase Success)
    "rollback_fails": [
        *ROLLED_BACK_STORY[:-1],
        [TF, WF],  # Rollback Failed -> Pending: critical
    ],
    "precheck_error": [[D], [WS, TS], [TF, WF]],
    "precheck_risks": [[D], [WS, TS], [TF, WF]],
    "upgrade_paused": [
        [D],
        [WS, TS],
        [TOK],
        [TS],
        [TOK],
        [TS],  # Cluster Running
        [TP],  # the upgrade task is paused (the point stays Running)
        # continued: nothing to say
        [TOK],
        [TS],  # PostCheck
        [TOK, WOK],
    ],
    "precheck_expires": [
        [D],
        [WS, TS],
        [TOK],
        ["precheck.expiring"],  # 15 s lead
        ["precheck.expiring"],  # 5 s lead
        ["precheck.expired"],
    ],
    "cancel": [[D], [WS, TS], [TF, WF], [WC]],
    "retry_success": [
        [D],
        [WS, TS],
        [TOK],
        [TS],
        [TOK],
        [TS],
        [TF, WF],
        [WR, TR],  # Cluster Queuing again (same taskID); task.queued is not routed
        [TS],
        [TOK],
        [TS],  # PostCheck
        [TOK, WOK],
    ],
    "seed": [[D]],
}


async def play(h: Harness, scenario: str) -> None:
    await h.settle()
    wf_id = h.sim.targets()[0]["workflow_id"]
    for _ in range(50):
        if scenario == "precheck_expires":
            pre = _point(h, wf_id, "PreCheck")
            if pre and pre["status"] == "Success":
                # expiry at 28 s; leads 15 s and 5 s -> cross each lead, then expiry
                for target in (14.0, 24.0):
                    clock = float(h.sim.state()["clock"]["offset"])
                    if clock < target:
                        await h.advance(target - clock)
                        await h.settle()
        result = await h.step()
        if not result["changes"]:
            break
        await h.settle()
    await h.settle()


def _point(h: Harness, wf_id: str, task_type: str) -> dict[str, object] | None:
    state = h.sim.state()
    for wf in state["workflows"]:
        if wf["workflow_id"] == wf_id:
            for p in wf["points"]:
                if p["taskType"] == task_type:
                    return dict(p)
    return None


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
async def test_scenario_delivers_exactly_the_expected_events(tmp_path: Path, scenario: str) -> None:
    expected = EXPECTED[scenario]
    async with running(tmp_path, [scenario]) as h:
        await play(h, scenario)

        stored = [s.event for s in await h.stored()]
        webhook = await h.webhook_events()
        mails = h.email_events()

        # exactly these kinds, in this order, grouped one message per workflow per poll
        assert webhook == expected
        assert mails == expected
        # every delivered event is in the store; the store also has the unrouted ones
        routed = [e.kind for e in stored if e.kind != "task.queued"]
        assert routed == [k for msg in expected for k in msg]
        # nothing twice: unique dedup keys, every event in exactly one message per URL
        keys = [e.dedup_key for e in stored]
        assert len(keys) == len(set(keys))
        assert len(h.webhook.bodies) == len(expected) == len(h.smtp.messages)
        # subjects follow the chat titles (same loudest event per message)
        for body, mail in zip(h.webhook.bodies, h.smtp.messages, strict=True):
            assert str(mail["Subject"]).startswith(body["title"].split(" (")[0][:40])
        stats = await h.daemon.store.outbox_stats(h.clock.now())
        assert stats.pending == 0 and stats.dead == 0


async def test_a_finished_workflow_stays_visible_after_its_job_stops(tmp_path: Path) -> None:
    """The API and status page keep showing how an upgrade ended, not an empty page."""
    async with running(tmp_path, ["clean_upgrade"]) as h:
        await play(h, "clean_upgrade")
        for _ in range(2):  # the terminal poll, then the one last poll that stops the job
            await h.settle()
        (wf_id,) = [t["workflow_id"] for t in h.sim.targets()]
        assert not h.daemon.watches
        (view,) = h.daemon.workflows()
        assert view["workflow_id"] == wf_id
        assert view["phase"] == "Success"
        assert view["next_poll_at"] is None


async def test_housekeeping_prunes_sent_deliveries_and_their_events(tmp_path: Path) -> None:
    def short_retention(raw: dict[str, Any]) -> None:
        raw["retention"] = "1s"

    async with running(tmp_path, ["clean_upgrade"], configure=short_retention) as h:
        await play(h, "clean_upgrade")
        assert await h.stored()
        await asyncio.sleep(1.2)
        assert await h.daemon.prune() > 0
        assert await h.stored() == []
        assert await h.daemon.store.list_deliveries(limit=100) == []
        # the watch state is not an event: the workflow is still known and not re-detected
        assert await h.daemon.store.load_all_states()
