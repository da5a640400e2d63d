"""Fidelity: the official SDK (test-only dependency) talks to the simulator unmodified."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import load_fixture
from tests.simulator.conftest import A, target_of
from watcher.simulator import Simulator

sdk_core = pytest.importorskip("huaweicloudsdkcore")
from huaweicloudsdkcce.v3 import (  # noqa: E402 - after the importorskip guard
    CceClient,
    ListUpgradeWorkFlowsRequest,
    ShowUpgradeWorkFlowRequest,
    UpgradeWorkFlowUpdateRequest,
    UpgradeWorkFlowUpdateRequestBody,
    UpgradeWorkFlowUpdateRequestBodyStatus,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning", "ignore::DeprecationWarning")


def _client(sim: Simulator, secret_key: str = A.secret_key) -> Any:
    credentials = BasicCredentials(A.access_key, secret_key, A.project_id)
    return CceClient.new_builder().with_credentials(credentials).with_endpoints([sim.url]).build()


async def test_sdk_show_and_list(sim: Simulator) -> None:
    t = target_of(sim, "clean_upgrade")
    await sim.advance(25)  # PreCheck and Snapshot done, Cluster Running
    client = _client(sim)
    request = ShowUpgradeWorkFlowRequest(
        cluster_id=t["cluster_id"], upgrade_workflow_id=t["workflow_id"]
    )
    shown = await asyncio.to_thread(client.show_upgrade_work_flow, request)
    assert shown.status_code == 200
    body = shown.to_dict()
    assert body["metadata"]["uid"] == t["workflow_id"]
    assert body["spec"]["cluster_id"] == t["cluster_id"]
    raw = json.loads(shown.raw_content)
    points = {p["taskType"]: p["status"] for p in raw["status"]["pointStatuses"]}
    assert points == {
        "PreCheck": "Success",
        "Snapshot": "Success",
        "Cluster": "Running",
        "PostCheck": "Init",
    }
    listed = await asyncio.to_thread(
        client.list_upgrade_work_flows, ListUpgradeWorkFlowsRequest(cluster_id=t["cluster_id"])
    )
    assert [w.metadata.uid for w in listed.items] == [t["workflow_id"]]
    counts = sim.requests()
    assert counts["routes"]["cce.workflows.show"] == 1
    assert counts["routes"]["cce.workflows.list"] == 1
    assert counts["auth_failures"] == 0


async def test_sdk_seed_and_patch_cancel(sim: Simulator) -> None:
    """The SDK's PATCH body is spaced JSON; the simulator verifies its exact bytes."""
    client = _client(sim)
    seed = target_of(sim, "seed")
    shown = await asyncio.to_thread(
        client.show_upgrade_work_flow,
        ShowUpgradeWorkFlowRequest(
            cluster_id=seed["cluster_id"], upgrade_workflow_id=seed["workflow_id"]
        ),
    )
    assert json.loads(shown.raw_content) == load_fixture("seed_workflow.json")

    update = UpgradeWorkFlowUpdateRequest(
        cluster_id=seed["cluster_id"],
        upgrade_workflow_id=seed["workflow_id"],
        body=UpgradeWorkFlowUpdateRequestBody(
            status=UpgradeWorkFlowUpdateRequestBodyStatus(phase="Cancel")
        ),
    )
    patched = await asyncio.to_thread(client.upgrade_work_flow_update, update)
    assert patched.status_code == 200
    assert json.loads(patched.raw_content)["status"]["phase"] == "Cancel"
    assert sim.requests()["auth_failures"] == 0


async def test_sdk_sees_errors_in_its_own_terms(sim: Simulator) -> None:
    t = target_of(sim, "clean_upgrade")
    missing = ShowUpgradeWorkFlowRequest(cluster_id=t["cluster_id"], upgrade_workflow_id="nope")
    with pytest.raises(ClientRequestException) as not_found:
        await asyncio.to_thread(_client(sim).show_upgrade_work_flow, missing)
    assert not_found.value.status_code == 404
    assert not_found.value.error_code == "CCE.01404001"
    assert not_found.value.request_id
    with pytest.raises(ClientRequestException) as denied:
        await asyncio.to_thread(_client(sim, "wrong-secret").show_upgrade_work_flow, missing)
    assert denied.value.status_code == 401
    assert denied.value.error_code == "APIGW.0301"
