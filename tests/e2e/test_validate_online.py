"""`config validate --online`: one signed call per target against the real simulator."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

from tests.e2e.test_check import SEED_CLUSTER, SEED_WORKFLOW
from watcher.simulator import start_simulator

MISSING = "00000000-0000-4000-8000-000000000000"


def config(tmp_path: Path, url: str, secret: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
state_dir = "{tmp_path}"
[cloud]
region = "ap-southeast-1"
project_id = "0123456789abcdef0123456789abcdef"
cce_endpoint = "{url}"
iam_endpoint = "{url}"
timeout_s = 3
[credentials]
access_key = "SIMULATORAK0000000001"
secret_key = "{secret}"
[[targets]]
name = "seed"
cluster_id = "{SEED_CLUSTER}"
workflow_id = "{SEED_WORKFLOW}"
[[targets]]
name = "seed-cluster"
cluster_id = "{SEED_CLUSTER}"
[[targets]]
name = "gone"
cluster_id = "{SEED_CLUSTER}"
workflow_id = "{MISSING}"
"""
    )
    return path


async def validate_online(path: Path, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        "config",
        "validate",
        "--online",
        "--config",
        str(path),
        env={"PATH": "/usr/bin:/bin", "HOME": str(path.parent), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


RESULT = re.compile(r"^(\S+): (ok|bad credentials|not found|unreachable|error) \((.+?), (\d+) ms\)")


def results(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        if m := RESULT.match(line):
            found[m.group(1)] = f"{m.group(2)} {m.group(3)}"
    return found


async def test_each_target_reports_ok_or_not_found(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        code, out, err = await validate_online(config(tmp_path, sim.url, sim.account.secret_key))
        calls = sim.requests()["total"]
    assert code == 2, out + err
    assert results(out) == {
        "seed": "ok 127.0.0.1",
        "seed-cluster": "ok 127.0.0.1",
        "gone": "not found 127.0.0.1",
    }
    assert calls == 3  # one signed call per target


async def test_a_wrong_secret_is_bad_credentials_and_never_shown(tmp_path: Path) -> None:
    wrong = "wrong-secret-DO-NOT-PRINT-0123456789"
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        code, out, err = await validate_online(config(tmp_path, sim.url, wrong))
        failures = sim.requests()["auth_failures"]
    assert code == 2
    assert set(results(out).values()) == {"bad credentials 127.0.0.1"}
    assert failures == 3  # never retried: bad signatures lock the key
    assert wrong not in out + err


async def test_a_closed_port_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, _ = await validate_online(config(tmp_path, f"http://127.0.0.1:{port}", "x" * 20))
    assert code == 2
    assert set(results(out).values()) == {"unreachable 127.0.0.1"}


def on_postgres(path: Path) -> Path:
    """The config without its missing workflow, on the PostgreSQL backend."""
    text = path.read_text().split('[[targets]]\nname = "gone"')[0]
    path.write_text(text + '\n[state]\nbackend = "postgres"\n')
    return path


async def test_the_postgres_store_is_checked_too(tmp_path: Path, pg_dsn: str) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        path = on_postgres(config(tmp_path, sim.url, sim.account.secret_key))
        code, out, err = await validate_online(path, WATCHER_STATE__DSN=pg_dsn)
    assert code == 0, out + err
    assert "state store: PostgreSQL answers and its schema is current" in out


async def test_an_unreachable_postgres_store_fails_validation_without_its_password(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql://watcher:PLANTED-PW-4711@127.0.0.1:{port}/watcher?connect_timeout=2"
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        path = on_postgres(config(tmp_path, sim.url, sim.account.secret_key))
        code, out, err = await validate_online(path, WATCHER_STATE__DSN=dsn)
    assert code == 2, out + err
    (line,) = [x for x in out.splitlines() if x.startswith("state store:")]
    assert str(port) in line
    assert "PLANTED-PW-4711" not in out + err
