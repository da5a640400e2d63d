"""Smoke run of tests/bench/bench_metrics.py at a tiny size: it runs and reports both shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "bench_metrics.py"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_bench_metrics_prints_the_capped_and_uncapped_lines() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--targets", "600", "--scrapes", "1"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("metrics[")]
    assert [line.split("]")[0] for line in lines] == ["metrics[capped", "metrics[uncapped"]
    assert all("loop lag" in line and "body=" in line for line in lines)
