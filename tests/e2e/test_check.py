"""`check` against the simulator's seed scenario, as the foundation issue's acceptance asks.

The command runs as a real subprocess; the simulator serves it over loopback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from watcher.simulator import start_simulator

SEED_CLUSTER = "b4b9e60f-8aa2-11ee-af09-0255ac10004f"
SEED_WORKFLOW = "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1"
CLI = [sys.executable, "-m", "watcher"]


def write_config(tmp_path: Path, url: str, credentials: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[cloud]
region = "ap-southeast-1"
project_id = "0123456789abcdef0123456789abcdef"
cce_endpoint = "{url}"
iam_endpoint = "{url}"
timeout_s = 5
[credentials]
{credentials}
[[targets]]
name = "seed"
cluster_id = "{SEED_CLUSTER}"
workflow_id = "{SEED_WORKFLOW}"
"""
    )
    return path


async def run_check(config: Path, *args: str) -> tuple[int, str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(config.parent)}
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "check",
        "--config",
        str(config),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def aksk(account: Any, secret: str | None = None) -> str:
    return (
        f'kind = "aksk"\naccess_key = "{account.access_key}"\n'
        f'secret_key = "{secret or account.secret_key}"'
    )


def password(account: Any) -> str:
    return (
        f'kind = "password"\nusername = "{account.user}"\n'
        f'password = "{account.password}"\ndomain = "{account.domain}"'
    )


@pytest.mark.parametrize("credentials", [aksk, password], ids=["aksk", "iam-token"])
async def test_check_prints_the_seed_workflow_and_exits_1(tmp_path: Path, credentials: Any) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        config = write_config(tmp_path, sim.url, credentials(sim.account))
        code, out, err = await run_check(config)
    assert code == 1, err
    assert "phase Pending" in out
    assert "v1.17.17-r0 -> v1.19.16-r80" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("    ")}
    assert "Success" in lines["PreCheck"]
    assert "(1m 1s)" in lines["PreCheck"]
    assert "not run" in lines["Snapshot"]
    assert "Failed" in lines["Cluster"]
    assert "(9m 5s)" in lines["Cluster"]
    assert "not run" in lines["PostCheck"]


async def test_check_json_has_the_same_facts(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        config = write_config(tmp_path, sim.url, aksk(sim.account))
        code, out, _ = await run_check(config, "--json")
    assert code == 1
    (workflow,) = json.loads(out)["workflows"]
    assert workflow["workflow_id"] == SEED_WORKFLOW
    assert workflow["phase"] == "Pending"
    statuses = {p["task_type"]: p["status"] for p in workflow["points"]}
    assert statuses == {
        "PreCheck": "Success",
        "Snapshot": None,
        "Cluster": "Failed",
        "PostCheck": None,
    }


async def test_wrong_secret_key_exits_2_without_echoing_it(tmp_path: Path) -> None:
    wrong = "wrong-secret-key-DO-NOT-PRINT-0123456789"
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        config = write_config(tmp_path, sim.url, aksk(sim.account, wrong))
        code, out, err = await run_check(config)
        auth_failures = sim.requests()
    assert code == 2
    assert "401" in out + err
    assert "APIGW.0301" in out + err
    assert wrong not in out + err
    assert sim.account.secret_key not in out + err
    # One signed request, never retried hot (five bad signatures lock the key).
    # The show call plus the cluster-name call: each tried once, never retried hot.
    assert auth_failures["auth_failures"] <= 2


async def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[credentials]\nkind = "aksk"\nsecret_key = "planted-SECRET-value"\n'
        "[polling]\nactive_s = -1\nbogus = 1\n"
    )
    code, out, err = await run_check(config)
    assert code == 2
    assert "planted-SECRET-value" not in out + err
    problems = [line for line in err.splitlines() if line.startswith("config error:")]
    assert len(problems) >= 3
    assert any("polling.active_s" in p and "WATCHER_POLLING__ACTIVE_S" in p for p in problems)
    assert any("bogus" in p for p in problems)
