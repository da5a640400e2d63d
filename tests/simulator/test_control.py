"""The /_sim/ control API: state, step, advance, faults, reset, clones, request counters."""

from __future__ import annotations

import asyncio
import time

from tests.simulator.conftest import Client, target_of, wf_path
from watcher.simulator import Simulator


def _show(sim: Simulator, scenario: str = "clean_upgrade") -> str:
    t = target_of(sim, scenario)
    return wf_path(t, f"/{t['workflow_id']}")


async def test_state_reports_clock_and_workflows(sim: Simulator, client: Client) -> None:
    state = (await client.control("GET", "/_sim/state")).json
    assert state["clock"]["offset"] == 0 and state["clock"]["autoplay"] is False
    assert len(state["workflows"]) == 7
    clean = next(w for w in state["workflows"] if w["name"] == "clean_upgrade")
    assert clean["phase"] == "Init" and clean["step"] == 0 and clean["next_step_at"] == 2


async def test_step_applies_the_next_step_and_moves_the_clock(
    sim: Simulator, client: Client
) -> None:
    t = target_of(sim, "clean_upgrade")
    reply = await client.control("POST", "/_sim/step", {"workflow": t["workflow_id"]})
    body = reply.json
    assert body["clock"] == 2
    mine = [c for c in body["changes"] if c["workflow"] == t["workflow_id"]]
    assert mine == [
        {
            "workflow": t["workflow_id"],
            "at": 2.0,
            "point": "PreCheck",
            "status": "Running",
            "taskID": mine[0]["taskID"],
            "phase": "Running",
        }
    ]
    empty = await client.control("POST", "/_sim/step")
    assert empty.status == 200  # no workflow: the earliest step of any
    missing = await client.control("POST", "/_sim/step", {"workflow": "nope"})
    assert missing.status == 404


async def test_advance_applies_due_steps(sim: Simulator, client: Client) -> None:
    reply = await client.control("POST", "/_sim/advance", {"seconds": 8})
    assert reply.json["clock"] == 8
    assert len(reply.json["changes"]) >= 2
    assert (await client.control("POST", "/_sim/advance", {"seconds": -1})).status == 400
    assert (await client.control("POST", "/_sim/advance", {})).status == 400


async def test_status_fault_with_count(sim: Simulator, client: Client) -> None:
    added = await client.control(
        "POST", "/_sim/faults", {"kind": "status", "status": 503, "count": 2}
    )
    assert added.status == 200 and added.json["fault"]["count"] == 2
    for _ in range(2):
        reply = await client.call("GET", _show(sim))
        assert reply.status == 503 and reply.json["errorCode"] == "CCE.01500001"
        assert reply.headers["X-Request-Id"]
    assert (await client.call("GET", _show(sim))).status == 200


async def test_throttle_fault_sends_retry_after(sim: Simulator, client: Client) -> None:
    sim.add_fault("throttle", retry_after=7, count=1)
    reply = await client.call("GET", _show(sim))
    assert reply.status == 429 and reply.headers["Retry-After"] == "7"
    assert reply.json["error_code"] == "APIGW.0308"
    assert (await client.call("GET", _show(sim))).status == 200


async def test_fault_matches_path(sim: Simulator, client: Client) -> None:
    sim.add_fault("status", status=500, path_contains=target_of(sim, "seed")["workflow_id"])
    assert (await client.call("GET", _show(sim))).status == 200
    assert (await client.call("GET", _show(sim, "seed"))).status == 500
    cleared = await client.control("DELETE", "/_sim/faults")
    assert cleared.json == {"cleared": 1}
    assert (await client.call("GET", _show(sim, "seed"))).status == 200


async def test_garbage_fault_returns_broken_json(sim: Simulator, client: Client) -> None:
    sim.add_fault("garbage", count=1)
    reply = await client.call("GET", _show(sim))
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    try:
        reply.json  # noqa: B018 - the point is that it does not parse
    except ValueError:
        pass
    else:
        raise AssertionError("garbage parsed as JSON")


async def test_slow_fault_delays(sim: Simulator, client: Client) -> None:
    sim.add_fault("slow", delay=0.3, count=1)
    started = time.monotonic()
    assert (await client.call("GET", _show(sim))).status == 200
    assert time.monotonic() - started >= 0.3


async def test_clearing_faults_ends_slow_answers_under_way(sim: Simulator, client: Client) -> None:
    sim.add_fault("slow", delay=600)
    call = asyncio.create_task(client.call("GET", _show(sim)))
    await asyncio.sleep(0.2)
    assert not call.done()  # held by the slow fault
    assert sim.clear_faults() == 1
    reply = await asyncio.wait_for(call, timeout=30)  # long before the 600 s delay
    assert reply.status == 200


async def test_bad_fault_requests(client: Client) -> None:
    assert (await client.control("POST", "/_sim/faults", {"kind": "meteor"})).status == 400
    bad_field = await client.control("POST", "/_sim/faults", {"kind": "status", "x": 1})
    assert bad_field.status == 400
    assert (
        await client.control("POST", "/_sim/faults", {"kind": "status", "count": 0})
    ).status == 400


async def test_reset_restores_the_start(sim: Simulator, client: Client) -> None:
    await sim.advance(100)
    await sim.add_workflows("clean_upgrade", 3)
    sim.add_fault("status")
    reply = await client.control("POST", "/_sim/reset")
    assert reply.status == 200 and len(reply.json["targets"]) == 7
    state = sim.state()
    assert state["clock"]["offset"] == 0
    assert {w["phase"] for w in state["workflows"] if w["name"] != "seed"} == {"Init"}
    assert (await client.call("GET", _show(sim))).status == 200


async def test_clone_workflows(sim: Simulator, client: Client) -> None:
    reply = await client.control(
        "POST", "/_sim/workflows", {"scenario": "clean_upgrade", "count": 50}
    )
    targets = reply.json["targets"]
    assert len(targets) == 50
    assert len({t["workflow_id"] for t in targets}) == 50
    assert len({t["cluster_id"] for t in targets}) == 50
    base = target_of(sim, "clean_upgrade")
    assert base["workflow_id"] not in {t["workflow_id"] for t in targets}
    last = targets[-1]
    shown = await client.call("GET", wf_path(last, f"/{last['workflow_id']}"))
    assert shown.status == 200 and shown.json["spec"]["clusterID"] == last["cluster_id"]
    # Clones start their timeline where the clock stands and all move together.
    await sim.advance(50)
    phases = {w["phase"] for w in sim.state()["workflows"] if w["scenario"] == "clean_upgrade"}
    assert phases == {"Success"}
    seeds = await client.control("POST", "/_sim/workflows", {"scenario": "seed", "count": 2})
    seed = seeds.json["targets"][0]
    body = (await client.call("GET", wf_path(seed, f"/{seed['workflow_id']}"))).json
    assert body["metadata"]["uid"] == seed["workflow_id"]
    assert body["status"]["phase"] == "Pending"
    assert (await client.control("POST", "/_sim/workflows", {"scenario": "nope"})).status == 404
    assert (
        await client.control("POST", "/_sim/workflows", {"scenario": "seed", "count": 0})
    ).status == 400


async def test_thousand_clones_serve_concurrently(sim: Simulator, client: Client) -> None:
    targets = await sim.add_workflows("clean_upgrade", 1000)
    replies = await asyncio.gather(
        *(client.call("GET", wf_path(t, f"/{t['workflow_id']}")) for t in targets[::50])
    )
    assert {r.status for r in replies} == {200}


async def test_request_counters(sim: Simulator, client: Client) -> None:
    await client.call("GET", _show(sim))
    await client.call("GET", _show(sim), auth="none")
    await client.call("GET", "/api/v3/unknown")
    counts = (await client.control("GET", "/_sim/requests")).json
    assert counts["routes"]["cce.workflows.show"] == 2
    assert counts["routes"]["unmatched"] == 1
    assert counts["total"] == 3
    assert counts["auth_failures"] == 1
    assert counts["auth_failure_reasons"] == {"x-auth-token not found": 1}


async def test_body_fault_serves_any_body_and_raw_retry_after(
    sim: Simulator, client: Client
) -> None:
    nested = "[" * 5000 + "]" * 5000
    added = await client.control(
        "POST", "/_sim/faults", {"kind": "body", "body": nested, "count": 1}
    )
    assert added.status == 200 and added.json["fault"]["body"] == "<10000 characters>"
    reply = await client.call("GET", _show(sim))
    assert reply.status == 200 and reply.raw == nested.encode()
    sim.add_fault("throttle", retry_after_header="1e300", count=1)
    reply = await client.call("GET", _show(sim))
    assert reply.status == 429 and reply.headers["Retry-After"] == "1e300"
    bad = await client.control("POST", "/_sim/faults", {"kind": "body"})
    assert bad.status == 400
