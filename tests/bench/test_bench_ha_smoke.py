"""Smoke runs of the HA benchmark (tests/bench/bench_ha.py): end to end against real daemons
and a private database on the test server, ending with a complete ``ha:`` line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent / "bench_ha.py"
LINE = re.compile(
    r"^ha: replicas=(\d) workflows=12 cpu/poll=[\d.]+ ms lateness_p99=(\d+|nan) ms"
    r" pg_cpu=([\d.]+|nan)% takeover p50/p99 (\S+)/(\S+) s$"
)
SHORT = ["--workflows", "12", "--interval", "2", "--window", "3", "--warmup", "30"]


def bench(pg_server: Any, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *SHORT, "--dsn", pg_server.dsn, *args],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_one_replica_without_leases(pg_server: Any) -> None:
    out = bench(pg_server, "--replicas", "1", "--lease-s", "0", "--settle", "2")
    found = LINE.match(out.strip().splitlines()[-1])
    assert found, out
    assert found.group(1) == "1"
    assert "replica 0: " in out and "takeover not measured" in out, out


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_two_replicas_measure_a_takeover(pg_server: Any) -> None:
    out = bench(pg_server, "--replicas", "2", "--lease-s", "3", "--settle", "6")
    found = LINE.match(out.strip().splitlines()[-1])
    assert found, out
    assert found.group(1) == "2"
    assert found.group(4) != "nan", out  # the killed replica's leases were taken over


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_sqlite_baseline_runs_one_replica_without_a_database(pg_server: Any) -> None:
    out = bench(pg_server, "--store", "sqlite", "--settle", "2")
    found = LINE.match(out.strip().splitlines()[-1])
    assert found, out
    assert found.group(1) == "1" and found.group(3) == "nan", out  # no PostgreSQL CPU
    assert "replicas on sqlite" in out and "leases held" not in out, out
