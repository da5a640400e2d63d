"""The fields issue 9 uses, read by the official SDK (test-only oracle) and by our models.

The simulator serves each field; the SDK's model classes name them (CCE_API.md 1.4). Both
parse the same bytes and must agree: pre-check ``status.message`` with no items (Error),
items' ``kind``/``group``/``errorCodes``/``riskSource``, the cluster's ``metadata.alias``
and ``status.reason``/``message``, and the upgrade task's ``Pause`` phase and progress.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.simulator.conftest import A
from watcher.core.models import Cluster, PreCheckTask, UpgradeTask
from watcher.simulator import Simulator, start_simulator

pytest.importorskip("huaweicloudsdkcore")
from huaweicloudsdkcce.v3 import (
    CceClient,
    ShowClusterRequest,
    ShowPreCheckRequest,
    ShowUpgradeClusterTaskRequest,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning", "ignore::DeprecationWarning")


def _client(sim: Simulator) -> Any:
    credentials = BasicCredentials(A.access_key, A.secret_key, A.project_id)
    return CceClient.new_builder().with_credentials(credentials).with_endpoints([sim.url]).build()


def _task_id(sim: Simulator, task_type: str) -> str:
    (wf,) = sim.state()["workflows"]
    return str(next(p["taskID"] for p in wf["points"] if p["taskType"] == task_type))


async def test_precheck_items_kind_group_error_codes_and_risk_source() -> None:
    async with start_simulator(scenarios=["precheck_risks"], autoplay=False) as sim:
        await sim.advance(16)
        (t,) = sim.targets()
        request = ShowPreCheckRequest(cluster_id=t["cluster_id"], task_id=_task_id(sim, "PreCheck"))
        shown = await asyncio.to_thread(_client(sim).show_pre_check, request)
        ours = PreCheckTask.from_api(json.loads(shown.raw_content))
    sdk_items = [
        *shown.status.cluster_check_status.items_status,
        *shown.status.addon_check_status.items_status,
        *(i for s in shown.status.node_check_status.node_stage_status for i in s.items_status),
    ]
    sdk_failed = {i.name: i for i in sdk_items if i.phase == "Failed"}
    assert (
        {i.name for i in ours.failed_items}
        == set(sdk_failed)
        == {
            "NodeOSCheck",
            "DeprecatedAPICheck",
            "DeprecatedAPIUsage",
        }
    )
    for item in ours.failed_items:
        sdk = sdk_failed[str(item.name)]
        assert (item.kind, item.group, list(item.error_codes)) == (
            sdk.kind,
            sdk.group,
            sdk.error_codes,
        )
    risk = next(i for i in ours.failed_items if i.kind == "Risk")
    shown_api = sdk_failed["DeprecatedAPIUsage"].risk_source.deprecated_api_risks[0]
    api = f"deprecated API {shown_api.url} called by {shown_api.user_agent}"
    assert risk.risk == api == "deprecated API /apis/batch/v1beta1/cronjobs called by helm/3.8.0"


async def test_an_error_precheck_has_a_message_and_no_items() -> None:
    async with start_simulator(scenarios=["precheck_error"], autoplay=False) as sim:
        await sim.advance(13)
        (t,) = sim.targets()
        request = ShowPreCheckRequest(cluster_id=t["cluster_id"], task_id=_task_id(sim, "PreCheck"))
        shown = await asyncio.to_thread(_client(sim).show_pre_check, request)
        ours = PreCheckTask.from_api(json.loads(shown.raw_content))
    assert shown.status.phase == ours.phase == "Error"
    assert shown.status.message == ours.message
    assert ours.message and "kube-apiserver" in ours.message
    assert ours.failed_items == ()


async def test_cluster_alias_reason_and_message_after_a_failed_rollback() -> None:
    async with start_simulator(scenarios=["rollback_fails"], autoplay=False) as sim:
        await sim.advance(49)
        (t,) = sim.targets()
        shown = await asyncio.to_thread(
            _client(sim).show_cluster, ShowClusterRequest(cluster_id=t["cluster_id"])
        )
        ours = Cluster.from_api(json.loads(shown.raw_content))
    assert ours.display_name == shown.metadata.alias == "Ledger (prod)"
    assert ours.name == shown.metadata.name == "demo-ledger"
    assert (ours.phase, ours.reason, ours.message) == (
        shown.status.phase,
        shown.status.reason,
        shown.status.message,
    )
    assert ours.trouble == (
        "cluster is RollbackFailed (RollbackFailed: etcd restore from master-backup failed: "
        "snapshot checksum mismatch)"
    )


async def test_a_paused_upgrade_task_says_pause_and_keeps_its_progress() -> None:
    async with start_simulator(scenarios=["upgrade_paused"], autoplay=False) as sim:
        await sim.advance(25)
        (t,) = sim.targets()
        task_id = _task_id(sim, "Cluster")
        request = ShowUpgradeClusterTaskRequest(cluster_id=t["cluster_id"], task_id=task_id)
        first = await asyncio.to_thread(_client(sim).show_upgrade_cluster_task, request)
        await sim.advance(5)
        later = await asyncio.to_thread(_client(sim).show_upgrade_cluster_task, request)
        ours = UpgradeTask.from_api(json.loads(later.raw_content))
        (wf,) = sim.state()["workflows"]
        point = next(p for p in wf["points"] if p["taskType"] == "Cluster")
    assert first.status.phase == later.status.phase == ours.phase == "Pause"
    assert point["status"] == "Running"  # the workflow's point enum has no Pause
    assert first.status.progress == later.status.progress == ours.progress  # frozen
    assert 0 < float(ours.progress or 0) < 100
