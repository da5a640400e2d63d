"""Smoke run of the scale benchmark (tests/bench/bench_scale.py --smoke): it runs end to end
against the real daemon and ends with a complete ``scale:`` line, lateness included."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "bench_scale.py"
LINE = re.compile(
    r"^scale: clusters=10 workflows=30 active=2 cpu=[\d.]+% req/s=[\d.]+"
    r" lateness_p99=\d+ ms rss=\d+ MB metrics=\d+ KB$"
)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_bench_scale_smoke_prints_the_scale_line() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert LINE.match(lines[-1]), done.stdout
    assert "change -> webhook from active: 2 events" in done.stdout, done.stdout
    assert "never arrived" not in done.stdout, done.stdout
