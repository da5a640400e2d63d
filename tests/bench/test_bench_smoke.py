"""Smoke run of the benchmark script (tests/bench/bench_poll.py --quick): it runs and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "bench_poll.py"


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_bench_quick_prints_both_rows() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ours: full poll" in out
    assert "SDK: show_upgrade_work_flow loop" in out
    assert "BUDGET MET" in out or "BUDGET MISSED" in out
