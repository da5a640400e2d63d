"""The ``simulate`` command: --list, and serving until SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

from click.testing import CliRunner

from watcher.simulator.command import simulate

RUN = "from watcher.simulator.command import simulate; simulate()"


def test_list_prints_every_scenario() -> None:
    result = CliRunner().invoke(simulate, ["--list"])
    assert result.exit_code == 0
    for name in ("clean_upgrade", "seed", "retry_success", "cancel"):
        assert name in result.output


def test_bad_scenario_is_a_clean_error() -> None:
    result = CliRunner().invoke(simulate, ["--port", "0", "--scenario", "no_such"])
    assert result.exit_code == 1
    assert "no_such" in result.output


def test_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, "--port", "0", "--scenario", "clean_upgrade", "--no-autoplay"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("CCE simulator listening on http://127.0.0.1:")
        url = first.split()[4]
        banner = [proc.stdout.readline() for _ in range(10)]
        assert any("SIMULATORAK0000000001" in line for line in banner)
        with urllib.request.urlopen(url + "/_sim/state", timeout=5) as resp:  # noqa: S310
            state = json.loads(resp.read())
        assert state["workflows"][0]["name"] == "clean_upgrade"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert "simulator stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
