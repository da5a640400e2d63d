"""CCE routes: shapes, status codes and error bodies as CCE_API.md describes them."""

from __future__ import annotations

import json
import re

from tests.simulator.conftest import A, Client, op_path, target_of, wf_path
from watcher.core import models
from watcher.simulator import Simulator

NOT_FOUND = "CCE.01404001"


async def test_show_workflow_has_the_cloud_shape(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    reply = await client.call("GET", wf_path(t, f"/{t['workflow_id']}"))
    assert reply.status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", reply.headers["X-Request-Id"])
    body = reply.json
    assert body["kind"] == "WorkFlowTask" and body["apiVersion"] == "v3"
    assert body["metadata"]["uid"] == t["workflow_id"]
    assert body["spec"] == {
        "clusterID": t["cluster_id"],
        "clusterVersion": "v1.28.15-r20",
        "targetVersion": "v1.29.13-r0",
    }
    assert body["status"]["phase"] == "Init"
    types = [p["taskType"] for p in body["status"]["pointStatuses"]]
    assert types == ["PreCheck", "Snapshot", "Cluster", "PostCheck"]
    assert all(p["status"] == "Init" for p in body["status"]["pointStatuses"])
    assert body["status"]["lineStatuses"][0] == {
        "startPoint": {"taskType": "PreCheck"},
        "endPoint": {"taskType": "Snapshot"},
        "critical": True,
    }
    parsed = models.Workflow.from_api(body)
    assert parsed.created_at is not None  # Go String() timestamps parse


async def test_list_workflows_wraps_items(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    body = (await client.call("GET", wf_path(t))).json
    assert body["kind"] == "List"
    assert [w["metadata"]["uid"] for w in body["items"]] == [t["workflow_id"]]


async def test_autopilot_prefix_serves_autopilot_clusters_only(
    sim: Simulator, client: Client
) -> None:
    t = target_of(sim, "cancel")
    assert t["api"] == "autopilot"
    assert (await client.call("GET", wf_path(t, f"/{t['workflow_id']}"))).status == 200
    wrong = wf_path({**t, "api": "cce"}, f"/{t['workflow_id']}")
    reply = await client.call("GET", wrong)
    assert reply.status == 404 and reply.json["errorCode"] == NOT_FOUND


async def test_unknown_workflow_cluster_and_project_are_404(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    for path in (
        wf_path(t, "/00000000-0000-0000-0000-000000000000"),
        wf_path({**t, "cluster_id": "nope"}, f"/{t['workflow_id']}"),
        wf_path({**t, "project_id": "f" * 32}, f"/{t['workflow_id']}"),
        op_path(t, "/operation/precheck/tasks/nope"),
        op_path(t, "/operation/upgrade/tasks/nope"),
        op_path({**t, "cluster_id": "nope"}, ""),
    ):
        reply = await client.call("GET", path)
        assert reply.status == 404, path
        assert set(reply.json) == {"errorCode", "errorMessage"}
        assert reply.json["errorCode"] == NOT_FOUND
        assert reply.headers["X-Request-Id"]


async def test_unknown_api_is_a_gateway_404(client: Client) -> None:
    reply = await client.call("GET", "/api/v3/nothing/here")
    assert reply.status == 404
    assert reply.json["error_code"] == "APIGW.0101"
    assert reply.json["request_id"] == reply.headers["X-Request-Id"]


async def test_clusters_list_and_show(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    listed = (await client.call("GET", f"/api/v3/projects/{A.project_id}/clusters")).json
    assert listed["kind"] == "List"
    ids = {c["metadata"]["uid"] for c in listed["items"]}
    assert t["cluster_id"] in ids
    assert target_of(sim, "cancel")["cluster_id"] not in ids  # autopilot lives elsewhere
    shown = (await client.call("GET", op_path(t, ""))).json
    assert shown["kind"] == "Cluster"
    assert shown["metadata"]["name"] == "demo-prod"
    assert shown["spec"]["version"] == "v1.28.15-r20"
    assert shown["status"]["phase"] == "Available"
    parsed = models.Cluster.from_api(shown)
    assert parsed.uid == t["cluster_id"]
    query = [("detail", "true")]
    assert (await client.call("GET", op_path(t, ""), query=query)).status == 200


async def test_cluster_phase_and_version_follow_the_upgrade(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    await sim.advance(21)
    assert (await client.call("GET", op_path(t, ""))).json["status"]["phase"] == "Upgrading"
    await sim.advance(30)
    shown = (await client.call("GET", op_path(t, ""))).json
    assert shown["status"]["phase"] == "Available"
    assert shown["spec"]["version"] == "v1.29.13-r0"


async def test_precheck_tasks_show_and_list(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "precheck_fails")
    empty = (await client.call("GET", op_path(t, "/operation/precheck/tasks"))).json
    assert empty["items"] == [] and empty["kind"] == "List"
    await sim.advance(20)
    wf = (await client.call("GET", wf_path(t, f"/{t['workflow_id']}"))).json
    point = wf["status"]["pointStatuses"][0]
    assert point["status"] == "Failed" and wf["status"]["phase"] == "Pending"
    path = op_path(t, f"/operation/precheck/tasks/{point['taskID']}")
    task = (await client.call("GET", path)).json
    assert task["kind"] == "PreCheckTask" and task["metadata"]["uid"] == point["taskID"]
    assert task["status"]["phase"] == "Failed"
    parsed = models.PreCheckTask.from_api(task)
    failed = {i.name: i for i in parsed.failed_items}
    assert set(failed) == {"NodeOSCheck", "DeprecatedAPICheck"}
    assert all(i.level == "Fatal" and i.message for i in failed.values())
    assert failed["NodeOSCheck"].node == "192.168.0.21"
    listed = (await client.call("GET", op_path(t, "/operation/precheck/tasks"))).json
    assert [i["metadata"]["uid"] for i in listed["items"]] == [point["taskID"]]


async def test_upgrade_task_progress_follows_the_timeline(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    await sim.advance(18)  # Cluster Queuing
    wf = (await client.call("GET", wf_path(t, f"/{t['workflow_id']}"))).json
    tid = wf["status"]["pointStatuses"][2]["taskID"]
    path = op_path(t, f"/operation/upgrade/tasks/{tid}")

    async def task() -> dict[str, str]:
        body = (await client.call("GET", path)).json
        assert body["kind"] == "UpgradeTask"
        return dict(body["status"])

    assert (await task())["progress"] == "0.00"
    await sim.advance(2)  # Running from 20 to 40
    assert (await task()) == {"phase": "Running", "progress": "0.00", "completionTime": ""}
    await sim.advance(10)
    assert (await task())["progress"] == "50.00"
    await sim.advance(10)
    done = await task()
    assert done["phase"] == "Success" and done["progress"] == "100.00" and done["completionTime"]
    listed = (await client.call("GET", op_path(t, "/operation/upgrade/tasks"))).json
    assert [i["metadata"]["uid"] for i in listed["items"]] == [tid]


async def test_patch_cancel_from_init(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    path = wf_path(t, f"/{t['workflow_id']}")
    body = json.dumps({"status": {"phase": "Cancel"}}).encode()
    reply = await client.call("PATCH", path, body=body)
    assert reply.status == 200 and reply.json["status"]["phase"] == "Cancel"
    await sim.advance(100)  # a cancelled workflow no longer moves
    assert (await client.call("GET", path)).json["status"]["phase"] == "Cancel"


async def test_patch_cancel_refused_while_a_task_runs(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    await sim.advance(3)  # PreCheck Running
    path = wf_path(t, f"/{t['workflow_id']}")
    reply = await client.call("PATCH", path, body=b'{"status":{"phase":"Cancel"}}')
    assert reply.status == 400
    assert reply.json["errorCode"] == "CCE.01400001"
    assert "cancel" in reply.json["errorMessage"]


async def test_patch_rejects_other_phases_and_bad_json(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    path = wf_path(t, f"/{t['workflow_id']}")
    for body in (b'{"status":{"phase":"Running"}}', b"not json", b""):
        reply = await client.call("PATCH", path, body=body)
        assert reply.status == 400 and reply.json["errorCode"] == "CCE.01400001"


async def test_patch_cancel_from_pending(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "precheck_fails")
    await sim.advance(16)
    path = wf_path(t, f"/{t['workflow_id']}")
    reply = await client.call("PATCH", path, body=b'{"status": {"phase": "Cancel"}}')
    assert reply.status == 200 and reply.json["status"]["phase"] == "Cancel"
    again = await client.call("PATCH", path, body=b'{"status": {"phase": "Cancel"}}')
    assert again.status == 400
