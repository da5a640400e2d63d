"""`check` fails fast and says why (issue 10, item 3): --timeout bounds the whole run, each
failed or slow attempt gets a stderr line, and the last line names host, attempts, time.
Real subprocesses against a closed port and the simulator with injected faults."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.e2e.test_check import aksk, run_check, write_config
from tests.e2e.test_cli_commands import closed_port
from watcher.simulator import start_simulator

LAST = re.compile(r"^check: failed: (\S+), (\d+) attempts?, (\d+\.\d) s elapsed$")


def last_line(err: str) -> re.Match[str]:
    match = LAST.match(err.strip().splitlines()[-1])
    assert match, err
    return match


async def test_an_unreachable_port_fails_fast_with_one_line_per_attempt(tmp_path: Path) -> None:
    port = closed_port()

    class Account:
        access_key = "AK0001"
        secret_key = "sk-0001"

    config = write_config(tmp_path, f"http://127.0.0.1:{port}", aksk(Account()))
    started = time.monotonic()
    code, _out, err = await run_check(config, "--timeout", "20")
    assert time.monotonic() - started < 20
    assert code == 2
    attempts = [line for line in err.splitlines() if "attempt" in line and "failed after" in line]
    assert attempts and all(f"127.0.0.1:{port}" in line for line in attempts)
    assert "(no answer)" in attempts[0]
    match = last_line(err)
    assert match.group(1) == f"127.0.0.1:{port}"
    assert int(match.group(2)) == len(attempts) >= 3  # the client's retries, each reported
    assert "Traceback" not in err


async def test_a_hanging_api_is_cut_off_by_the_total_timeout(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        sim.add_fault("slow", delay=8)
        config = write_config(tmp_path, sim.url, aksk(sim.account))
        started = time.monotonic()
        code, out, err = await run_check(config, "--timeout", "2")
        took = time.monotonic() - started
    assert code == 2
    assert took < 12  # process start included; without --timeout: 3 attempts x 5 s, at least
    assert "no answer within --timeout 2 s" in out
    match = last_line(err)
    assert match.group(1).startswith("127.0.0.1:")
    assert 1.5 <= float(match.group(3)) < 5


async def test_a_failing_api_reports_each_retry(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
        sim.add_fault("status", status=503)
        config = write_config(tmp_path, sim.url, aksk(sim.account))
        code, _out, err = await run_check(config, "--timeout", "30")
    assert code == 2
    failed = [line for line in err.splitlines() if "failed after" in line]
    assert len(failed) == 3
    assert all("(HTTP 503" in line for line in failed)
    assert [int(re.search(r"attempt (\d+)", f).group(1)) for f in failed] == [1, 2, 3]  # type: ignore[union-attr]
    assert last_line(err).group(2) == "3"
