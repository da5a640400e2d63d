"""Every shipped scenario plays to its end state through the control API; loading rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_fixture
from tests.simulator.conftest import Client, op_path, target_of, wf_path
from watcher.core import models
from watcher.core.timeparse import parse_timestamp
from watcher.simulator import Simulator, start_simulator
from watcher.simulator.scenario import (
    ScenarioError,
    find_scenario,
    list_scenarios,
    load_scenario,
)


async def _play(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    """Step one workflow through its whole timeline; return every change of it."""
    seen: list[dict[str, Any]] = []
    for _ in range(50):
        reply = await client.control("POST", "/_sim/step", {"workflow": workflow_id})
        assert reply.status == 200
        changes = [c for c in reply.json["changes"] if c["workflow"] == workflow_id]
        if not changes:
            return seen
        seen += changes
    raise AssertionError("timeline did not end")


async def _show(client: Client, target: dict[str, Any]) -> dict[str, Any]:
    reply = await client.call("GET", wf_path(target, f"/{target['workflow_id']}"))
    assert reply.status == 200
    body: dict[str, Any] = reply.json
    return body


def _points(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["taskType"]: p for p in body["status"]["pointStatuses"]}


async def test_clean_upgrade(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    changes = await _play(client, t["workflow_id"])
    phases = [c["phase"] for c in changes]
    assert phases[0] == "Running" and phases[-1] == "Success"
    assert "Pending" not in phases
    body = await _show(client, t)
    points = _points(body)
    assert all(p["status"] == "Success" for p in points.values())
    wf = models.Workflow.from_api(body)
    cluster = wf.point("Cluster")
    assert cluster is not None and cluster.started_at and cluster.ended_at
    assert (cluster.ended_at - cluster.started_at).total_seconds() == pytest.approx(20)
    precheck = wf.point("PreCheck")
    assert precheck is not None and precheck.expires_at and precheck.ended_at
    assert (precheck.expires_at - precheck.ended_at).total_seconds() == pytest.approx(600)
    duration = sim.world.workflows[t["workflow_id"]].scenario.duration
    assert 30 <= duration <= 60


async def test_precheck_fails(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "precheck_fails")
    changes = await _play(client, t["workflow_id"])
    assert changes[-1]["phase"] == "Pending" and changes[-1]["status"] == "Failed"
    points = _points(await _show(client, t))
    assert points["PreCheck"]["status"] == "Failed"
    assert points["Cluster"]["status"] == "Init"


async def test_cluster_fails_then_rollback(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "cluster_fails_rollback")
    changes = await _play(client, t["workflow_id"])
    by_point = [(c.get("point"), c.get("status"), c["phase"]) for c in changes]
    assert ("Cluster", "Failed", "Pending") in by_point
    assert ("Rollback", "Running", "Running") in by_point
    assert by_point[-1] == ("Rollback", "Success", "Pending")
    body = await _show(client, t)
    points = _points(body)
    assert points["Rollback"]["status"] == "Success"
    assert points["Cluster"]["status"] == "Failed"
    assert {
        "startPoint": {"taskType": "Cluster"},
        "endPoint": {"taskType": "Rollback"},
        "critical": False,
    } in body["status"]["lineStatuses"]
    task = (
        await client.call(
            "GET", op_path(t, f"/operation/upgrade/tasks/{points['Cluster']['taskID']}")
        )
    ).json
    assert task["status"] == {
        "phase": "Failed",
        "progress": "45.00",
        "completionTime": points["Cluster"]["endTimeStamp"],
    }
    cluster = (await client.call("GET", op_path(t, ""))).json
    assert cluster["spec"]["version"] == "v1.28.15-r20"


async def test_precheck_expires(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "precheck_expires")
    await _play(client, t["workflow_id"])
    body = await _show(client, t)
    points = _points(body)
    assert points["PreCheck"]["status"] == "Success"
    assert points["Cluster"]["status"] == "Init"
    expires = parse_timestamp(points["PreCheck"]["expireTimeStamp"])
    assert expires is not None and expires < sim.clock.now()


async def test_cancel(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "cancel")
    changes = await _play(client, t["workflow_id"])
    assert [c["phase"] for c in changes] == ["Running", "Pending", "Cancel"]
    assert (await _show(client, t))["status"]["phase"] == "Cancel"


async def test_retry_success_keeps_the_task_id(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "retry_success")
    changes = await _play(client, t["workflow_id"])
    cluster_changes = [c for c in changes if c.get("point") == "Cluster"]
    assert [c["status"] for c in cluster_changes] == [
        "Running",
        "Failed",
        "Queuing",
        "Running",
        "Success",
    ]
    assert len({c["taskID"] for c in cluster_changes}) == 1
    assert [c["phase"] for c in changes][-1] == "Success"
    assert "Pending" in [c["phase"] for c in changes]


async def test_retry_progress_resumes_from_the_failure(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "retry_success")
    await sim.advance(31)  # failed at 24 with 60.00, queued again at 30
    tid = _points(await _show(client, t))["Cluster"]["taskID"]
    path = op_path(t, f"/operation/upgrade/tasks/{tid}")
    assert (await client.call("GET", path)).json["status"]["progress"] == "60.00"
    await sim.advance(7)  # running 32..44 toward 100: half way at 38
    assert (await client.call("GET", path)).json["status"]["progress"] == "80.00"


async def test_seed_serves_the_fixture_verbatim(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "seed")
    assert await _show(client, t) == load_fixture("seed_workflow.json")
    await sim.advance(1000)
    assert await _show(client, t) == load_fixture("seed_workflow.json")
    tid = _points(await _show(client, t))["Cluster"]["taskID"]
    task = (await client.call("GET", op_path(t, f"/operation/upgrade/tasks/{tid}"))).json
    assert task["status"]["phase"] == "Failed"


def test_every_required_scenario_is_listed() -> None:
    names = set(list_scenarios())
    assert {
        "clean_upgrade",
        "precheck_fails",
        "cluster_fails_rollback",
        "precheck_expires",
        "cancel",
        "retry_success",
        "seed",
        "rollback_ends",
        "rollback_fails",
        "precheck_error",
        "precheck_risks",
        "upgrade_paused",
    } <= names
    assert not [d for d in list_scenarios().values() if d.startswith("(invalid")]


async def test_load_from_an_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
description = "custom"
[cluster]
id = "c-1"
name = "mine"
version = "v1.30.1-r0"
api = "autopilot"
[workflow]
id = "w-1"
target_version = "v1.31.1-r0"
[[workflow.points]]
type = "PreCheck"
[[workflow.points]]
type = "Cluster"
[[workflow.lines]]
from = "PreCheck"
to = "Cluster"
[[steps]]
at = 1
point = "PreCheck"
status = "Running"
""",
        encoding="utf-8",
    )
    async with start_simulator(scenarios=[str(path)], autoplay=False) as sim:
        (target,) = sim.targets()
        assert target["name"] == "mine" and target["api"] == "autopilot"
        result = await sim.step()
        assert result["changes"][0]["phase"] == "Running"
        points = sim.state()["workflows"][0]["points"]
        assert [p["taskType"] for p in points] == ["PreCheck", "Cluster"]
        assert "critical" not in json.dumps(sim.world.workflows["w-1"].lines)


def test_scenario_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = find_scenario("cancel")
    (tmp_path / "elsewhere.toml").write_text(source.read_text(encoding="utf-8"))
    monkeypatch.setenv("WATCHER_SCENARIO_DIR", str(tmp_path))
    assert load_scenario("elsewhere").cluster.api == "autopilot"


def test_invalid_scenarios_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario("no_such_scenario")
    bad = tmp_path / "bad.toml"
    bad.write_text('[cluster]\nid="a"\nname="b"\nversion="c"\ncolour="red"\n')
    with pytest.raises(ScenarioError, match="colour"):
        load_scenario(bad)
    bad.write_text('[cluster]\nid="a"\nname="b"\nversion="c"\napi="gke"\n')
    with pytest.raises(ScenarioError, match="api"):
        load_scenario(bad)


async def test_autoplay_moves_time_by_itself() -> None:
    async with start_simulator(scenarios=["clean_upgrade"], speed=200.0) as sim:
        import asyncio

        for _ in range(100):
            if sim.state()["workflows"][0]["phase"] == "Success":
                break
            await asyncio.sleep(0.02)
        assert sim.state()["workflows"][0]["phase"] == "Success"
