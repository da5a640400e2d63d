"""`check` and `config validate --online` with a project target (issue 11.3), as real
subprocesses against the simulator: the project's selected clusters are what is checked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_check import SEED_WORKFLOW, aksk, run_check
from tests.e2e.test_validate_online import validate_online
from watcher.simulator import Simulator, start_simulator


def project_config(tmp_path: Path, sim: Simulator, include: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[cloud]
region = "ap-southeast-1"
project_id = "{sim.account.project_id}"
cce_endpoint = "{sim.url}"
iam_endpoint = "{sim.url}"
timeout_s = 5
[credentials]
{aksk(sim.account)}
[[targets]]
name = "fleet"
kind = "project"
include = {include}
exclude = ["*-scratch"]
"""
    )
    return path


async def test_check_covers_every_selected_cluster_of_a_project(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        seed = next(iter(sim.world.clusters.values()))
        await sim.add_cluster("team-quiet")  # selected, no workflow: nothing to show
        await sim.add_cluster(
            "team-scratch", workflows=[{"scenario": "clean_upgrade", "finished": True}]
        )
        config = project_config(tmp_path, sim, f'["{seed.name}", "team-*"]')
        code, out, err = await run_check(config, "--json")
    assert code == 1, err  # the seed workflow is Pending (a task failed)
    report = json.loads(out)
    assert report["errors"] == []
    (workflow,) = report["workflows"]
    assert workflow["workflow_id"] == SEED_WORKFLOW
    assert workflow["target"]["name"] == f"fleet/{seed.name}"
    assert workflow["target"]["cluster_id"] == seed.id


async def test_validate_online_lists_the_project_once(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        await sim.add_cluster("team-a")
        await sim.add_cluster("team-scratch")
        before = sim.requests()["total"]
        code, out, err = await validate_online(project_config(tmp_path, sim, '["team-*"]'))
        calls = sim.requests()["total"] - before
    assert code == 0, out + err
    assert "fleet: ok" in out
    assert "3 clusters, 1 selected" in out
    assert calls == 1  # one ListClusters call
