"""The API models parse the cloud's JSON faithfully and tolerate odd answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from watcher.core.models import (
    Cluster,
    Phase,
    PreCheckTask,
    TaskStatus,
    UpgradeTask,
    Workflow,
    parse_workflow_list,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_seed_workflow_parses_to_exactly_its_values(seed_workflow_raw: dict[str, Any]) -> None:
    wf = Workflow.from_api(seed_workflow_raw)
    assert wf.uid == "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1"
    assert wf.cluster_id == "b4b9e60f-8aa2-11ee-af09-0255ac10004f"
    assert (wf.cluster_version, wf.target_version) == ("v1.17.17-r0", "v1.19.16-r80")
    assert wf.phase == Phase.PENDING
    assert wf.created_at == utc("2023-11-25T06:32:34.923248")
    assert wf.updated_at == utc("2023-11-25T07:49:30.281911")
    assert [p.task_type for p in wf.points] == ["PreCheck", "Snapshot", "Cluster", "PostCheck"]
    pre, snap, cluster, post = wf.points
    assert pre.task_id == "f61e008c-1600-41c0-9bde-121de5a30660"
    assert pre.status == TaskStatus.SUCCESS
    assert pre.started_at == utc("2023-11-25T07:20:04.592972")
    assert pre.ended_at == utc("2023-11-25T07:21:05.518966")
    assert pre.expires_at == utc("2023-11-25T08:21:05.518966")
    assert snap.status is None and snap.task_id is None and snap.started_at is None
    assert cluster.task_id == "6d799ff6-3afe-4242-80b4-6f0a0fa746cb"
    assert cluster.status == TaskStatus.FAILED
    assert cluster.started_at == utc("2023-11-25T07:49:30.283459")
    assert cluster.ended_at == utc("2023-11-25T07:58:35.507243")
    assert post.status is None
    assert [(ln.start, ln.end) for ln in wf.lines] == [
        ("PreCheck", "Cluster"),
        ("Cluster", "PostCheck"),
    ]


def test_persisted_form_round_trips(seed_workflow_raw: dict[str, Any]) -> None:
    wf = Workflow.from_api(seed_workflow_raw)
    assert Workflow.model_validate_json(wf.model_dump_json()) == wf


def test_unknown_values_are_kept_and_unknown_fields_ignored() -> None:
    raw = {
        "metadata": {"uid": "w1", "surprise": 1},
        "status": {
            "phase": "Paused",
            "pointStatuses": [
                {"taskType": "Canary", "status": "Pause", "startTimeStamp": "not a time"},
            ],
        },
    }
    wf = Workflow.from_api(raw)
    assert wf.phase == "Paused"
    assert wf.points[0].task_type == "Canary"
    assert wf.points[0].status == "Pause"
    assert wf.points[0].started_at is None


@pytest.mark.parametrize("raw", [[], "text", {"metadata": {}}, {"status": {"phase": "Init"}}])
def test_body_that_is_not_a_workflow_is_rejected(raw: Any) -> None:
    with pytest.raises(ValueError, match="workflow"):
        Workflow.from_api(raw)


def test_missing_sections_are_tolerated() -> None:
    wf = Workflow.from_api({"metadata": {"uid": "w1"}, "status": None, "spec": []})
    assert wf.phase is None and wf.points == () and wf.cluster_version is None


def test_list_is_sorted_newest_first_and_skips_items_without_uid() -> None:
    raw = {
        "kind": "List",
        "items": [
            {"metadata": {"uid": "old", "creationTimestamp": "2024-01-01 00:00:00 +0000 UTC"}},
            {"metadata": {}},
            {"metadata": {"uid": "new", "creationTimestamp": "2024-02-01T00:00:00Z"}},
        ],
    }
    assert [w.uid for w in parse_workflow_list(raw)] == ["new", "old"]


def test_precheck_collects_failed_items_from_every_section() -> None:
    item_ok = {"name": "ok", "phase": "Success", "level": "Info"}
    raw = {
        "metadata": {"uid": "pc1"},
        "status": {
            "phase": "Failed",
            "expireTimeStamp": "",
            "clusterCheckStatus": {
                "itemsStatus": [
                    item_ok,
                    {"name": "etcd", "phase": "Failed", "level": "Fatal", "message": "down"},
                ]
            },
            "addonCheckStatus": {"itemsStatus": [{"name": "coredns", "phase": "Error"}]},
            "nodeCheckStatus": {
                "nodeStageStatus": [
                    {
                        "nodeInfo": {"name": "node-1"},
                        "itemsStatus": [{"name": "disk", "phase": "Failed"}],
                    },
                ]
            },
        },
    }
    task = PreCheckTask.from_api(raw)
    assert [(i.name, i.node) for i in task.failed_items] == [
        ("etcd", None),
        ("coredns", None),
        ("disk", "node-1"),
    ]
    assert task.failed_items[0].message == "down"


def test_upgrade_task_progress() -> None:
    raw = {
        "metadata": {"uid": "u1"},
        "spec": {"version": "v1.25", "targetVersion": "v1.27"},
        "status": {"phase": "Running", "progress": "42.50", "completionTime": ""},
    }
    task = UpgradeTask.from_api(raw)
    assert (task.phase, task.progress, task.completed_at) == ("Running", "42.50", None)


def test_risk_source_is_summarised_for_people() -> None:
    from watcher.core.models import risk_summary

    assert risk_summary({}) is None
    assert risk_summary(None) is None
    text = risk_summary(
        {
            "deprecatedAPIRisks": [{"url": "/apis/x/v1beta1/y", "userAgent": "kubectl/1.20"}],
            "nodeRisks": [{"NodeID": "n1"}, {"NodeID": "n2"}],
            "addonRisks": [{"addonTemplateName": "coredns", "alias": ""}],
            "configurationRisks": [{"field": "maxPods", "sourceFile": "/etc/kubelet.conf"}],
        }
    )
    assert text == (
        "deprecated API /apis/x/v1beta1/y called by kubectl/1.20; nodes n1, n2; "
        "addon coredns; configuration maxPods in /etc/kubelet.conf"
    )


@pytest.mark.parametrize(
    ("alias", "shown"),
    [("Payments", "Payments"), ("", "prod-1"), ("   ", "prod-1"), (None, "prod-1"), (7, "7")],
)
def test_cluster_display_name_skips_a_blank_alias(alias: object, shown: str) -> None:
    raw = {"metadata": {"uid": "u", "name": "prod-1", "alias": alias}, "spec": {}, "status": {}}
    assert Cluster.from_api(raw).display_name == shown


def test_equal_edges_of_different_workflows_are_one_object() -> None:
    """100,000 watched workflows kept ~300,000 equal Lines (issue 12.6): they are shared."""
    from watcher.core.models import Line

    raw = {"startPoint": {"taskType": "PreCheck"}, "endPoint": {"taskType": "Cluster"}}
    first, second = Line.from_api(dict(raw)), Line.from_api({**raw, "critical": None})
    assert first is second and first.start == "PreCheck" and first.end == "Cluster"
    assert Line.from_api({**raw, "critical": True}) is not first
    odd = Line.from_api({"startPoint": {"taskType": 7}})  # not a str: parsed, not cached
    assert odd.start == "7"


def test_parsed_workflows_share_one_set_of_given_fields() -> None:
    """pydantic's per-instance fields set cost 728 bytes per watched workflow (issue 12.6)."""
    from watcher.core.models import Workflow

    raw = {"metadata": {"uid": "w1", "name": "n"}, "spec": {}, "status": {"phase": "Running"}}
    a, b = Workflow.from_api(raw), Workflow.from_api({**raw, "metadata": {"uid": "w2"}})
    assert a.model_fields_set is b.model_fields_set
    renamed = a.model_copy(update={"name": "other"})
    assert renamed.name == "other" and a.model_fields_set is b.model_fields_set
    assert a.model_dump(exclude_unset=True)["name"] == "n"
