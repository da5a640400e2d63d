"""What the on-call engineer reads (issue 9), over a real webhook and real SMTP.

Titles name the most important event; every line shows when its fact happened; the
rollback story ends; check items, the cluster's reason and a next step are in the body;
the console link and a runbook are there; the chat body does not repeat the title.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Harness, running
from tests.e2e.test_scenarios import play
from watcher.core.timeparse import parse_timestamp
from watcher.core.wording import line_time

pytestmark = pytest.mark.slow

FROM, TO = "v1.28.15-r20", "v1.29.13-r0"
RUNBOOK_TARGET = "https://wiki.example.com/runbooks/cce-upgrade"
RUNBOOK_ROUTE = "https://wiki.example.com/runbooks/cce-upgrade-failed"


def _plain(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _sim_point(h: Harness, task_type: str) -> dict[str, Any]:
    (wf,) = h.sim.state()["workflows"]
    return dict(next(p for p in wf["points"] if p["taskType"] == task_type))


def _go(text: str) -> datetime:
    moment = parse_timestamp(text)
    assert moment is not None
    return moment


def _with_runbooks(raw: dict[str, Any]) -> None:
    for target in raw["targets"]:
        target["runbook_url"] = RUNBOOK_TARGET
    raw["notify"]["routes"] = [
        {"kinds": ["workflow.failed", "task.failed"], "runbook_url": RUNBOOK_ROUTE},
        {"exclude_kinds": ["workflow.failed", "task.failed", "task.queued"]},
    ]


async def _lines_tell_true_time(h: Harness) -> None:
    """Every delivered line's time is its event's line time, never after it was seen."""
    stored = {s.event.message: s.event for s in await h.stored()}
    for body in h.webhook.bodies:
        lines = str(body["message"]).splitlines()
        assert not lines[0].endswith(body["title"].split(": ", 1)[1])  # title not repeated
        for line in lines:
            m = re.match(r"^(\d\d:\d\d) UTC  (.+)$", line)
            if m is None:
                continue
            event = stored[m.group(2)]
            assert m.group(1) == line_time(event).strftime("%H:%M")
    for event in stored.values():
        assert event.occurred_at is not None and event.occurred_at <= event.observed_at
        assert "observed late" not in event.message


async def test_a_rollback_that_ends_the_workflow_is_titled_rolled_back(tmp_path: Path) -> None:
    async with running(tmp_path, ["rollback_ends"], configure=_with_runbooks) as h:
        await play(h, "rollback_ends")
        last, mail = h.webhook.bodies[-1], h.smtp.messages[-1]
        rollback = _sim_point(h, "Rollback")
        story = f"Upgrade {FROM} → {TO} rolled back; the cluster runs {FROM} again"
        assert last["title"] == f"[WARNING] Payments (prod): {story}"  # alias, not the name
        assert last["type"] == "warning"
        assert str(mail["Subject"]).startswith(f"[WARNING] Payments (prod): {story}")
        # the headline's line time is the rollback's end, from the cloud
        ended = _go(rollback["endTimeStamp"])
        first = str(last["message"]).splitlines()[0]
        assert first.startswith(f"{ended:%H:%M} UTC | Payments (prod) | {FROM} -> {TO}")
        assert "Rollback task succeeded in 14s" in last["message"]
        assert "Console: https://console-intl.huaweicloud.com/cce2.0/?region=" in last["message"]
        assert f"Runbook: {RUNBOOK_TARGET}" in last["message"]
        body = _plain(mail)
        assert f"When:      {ended:%Y-%m-%d %H:%M:%S} UTC" in body
        assert "Next step: Find out why the upgrade failed" in body
        # the failure before it carried the route's runbook and the next step
        failed = next(b for b in h.webhook.bodies if "failed" in b["title"])
        assert failed["title"].startswith(
            f"[FAILURE] Payments (prod): Upgrade {FROM} → {TO} failed"
        )
        assert f"Runbook: {RUNBOOK_ROUTE}" in failed["message"]
        assert "then Retry the upgrade; or roll the cluster back" in failed["message"]
        await _lines_tell_true_time(h)
        for _ in range(2):
            await h.settle()
        (view,) = h.daemon.workflows()
        assert (view["phase"], view["state"]) == ("Success", "Rolled back")


async def test_a_failed_rollback_is_critical_and_says_what_state_the_cluster_is_in(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, ["rollback_fails"]) as h:
        await play(h, "rollback_fails")
        last = h.webhook.bodies[-1]
        assert last["title"].startswith(f"[CRITICAL] Ledger (prod): Upgrade {FROM} → {TO} failed")
        assert "Rollback task Failed after 12s" in last["title"]
        assert last["type"] == "failure"
        assert (
            "cluster is RollbackFailed (RollbackFailed: etcd restore from master-backup "
            "failed: snapshot checksum mismatch)"
        ) in last["message"]
        assert (
            "Next step: The rollback failed and the cluster may not be usable" in (last["message"])
        )
        assert str(h.smtp.messages[-1]["Subject"]).startswith("[CRITICAL] Ledger (prod)")
        await _lines_tell_true_time(h)
        (view,) = h.daemon.workflows()
        assert (view["phase"], view["state"]) == ("Pending", "Failed")


async def test_precheck_items_say_what_must_be_fixed_and_what_may_be_skipped(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, ["precheck_risks"]) as h:
        await play(h, "precheck_risks")
        last, mail = h.webhook.bodies[-1], h.smtp.messages[-1]
        assert last["title"].startswith(
            "[FAILURE] demo-web: Upgrade v1.27.16-r10 → v1.28.15-r20 failed"
        )
        text = str(last["message"])
        assert (
            "DeprecatedAPIUsage [Risk, LimitCheck, Warning]: deprecated APIs were called in the "
            "last 30 days (codes CCE.0402.DeprecatedAPI; risk: deprecated API "
            "/apis/batch/v1beta1/cronjobs called by helm/3.8.0)"
        ) in text
        assert "NodeOSCheck [Exception, NodeCheck, Fatal] on 192.168.0.21" in text
        assert (
            "Next step: Fix DeprecatedAPICheck, NodeOSCheck (must be fixed); fix or confirm and "
            "skip DeprecatedAPIUsage (risks); then run the pre-check again."
        ) in text
        assert "Failed check items:" in _plain(mail)
        await _lines_tell_true_time(h)


async def test_an_error_precheck_reports_its_message(tmp_path: Path) -> None:
    async with running(tmp_path, ["precheck_error"]) as h:
        await play(h, "precheck_error")
        text = str(h.webhook.bodies[-1]["message"])
        assert (
            "the pre-check reports: failed to connect to kube-apiserver: context deadline exceeded"
        ) in text
        assert "Next step: Fix the cause the pre-check reports, then run the pre-check again." in (
            text
        )


async def test_a_paused_upgrade_is_reported_with_its_progress(tmp_path: Path) -> None:
    async with running(tmp_path, ["upgrade_paused"]) as h:
        await play(h, "upgrade_paused")
        paused = next(b for b in h.webhook.bodies if "paused" in b["title"])
        assert re.match(
            rf"^\[WARNING\] demo-search: Cluster upgrade task paused at \d+(\.\d)?% "
            rf"\({FROM} → {TO}\)",
            paused["title"],
        )
        assert "Next step: Continue the upgrade in the CCE console" in paused["message"]


async def test_precheck_expiry_lines_show_their_due_times(tmp_path: Path) -> None:
    """'expires in' at expiry minus the lead, 'expired' at the expiry (email has seconds)."""
    async with running(tmp_path, ["precheck_expires"]) as h:
        await play(h, "precheck_expires")
        expiry = _go(_sim_point(h, "PreCheck")["expireTimeStamp"])
        due = [expiry - timedelta(seconds=15), expiry - timedelta(seconds=5), expiry]
        kinds = ["precheck.expiring", "precheck.expiring", "precheck.expired"]
        stored = [s.event for s in await h.stored() if s.event.kind.startswith("precheck.")]
        assert [e.kind for e in stored] == kinds
        expected = [d.replace(microsecond=0) for d in due]
        assert [e.occurred_at.replace(microsecond=0) for e in stored if e.occurred_at] == (expected)
        mails = [_plain(m) for m in h.smtp.messages[-3:]]
        for body, moment in zip(mails, expected, strict=True):
            assert f"When:      {moment:%Y-%m-%d %H:%M:%S} UTC" in body
        await _lines_tell_true_time(h)
