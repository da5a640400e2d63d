"""`demo --scenario X` plays every scenario of config/scenarios/ to its end and exits 0.

Parametrized over the directory listing, so a new scenario is covered without editing this
file. While the demo runs, the status page it announces must answer.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from pathlib import Path

import pytest

SCENARIOS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "config" / "scenarios").glob("*.toml")
)


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return int(response.status)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_demo_plays_the_scenario_to_its_end(scenario: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        "demo",
        "--scenario",
        scenario,
        "--speed",
        "10",
        "--timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    page_status = None
    while line := (await asyncio.wait_for(proc.stdout.readline(), 90)).decode():
        lines.append(line)
        if line.startswith("Status page: "):
            url = line.split()[2]
            page_status = await asyncio.to_thread(_get, url)
    err = (await proc.stderr.read()).decode() if proc.stderr else ""
    await proc.wait()
    out = "".join(lines)
    assert proc.returncode == 0, out + err
    assert page_status == 200
    assert "Scenario finished" in out
    assert any(line.startswith("[") for line in lines), "no notification was printed"
    assert "Next steps:" in out and "config validate" in out
    assert "Traceback" not in err
