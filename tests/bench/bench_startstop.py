"""Start and stop at scale (issue 12 item 4): ready within 5 s, SIGTERM to exit within 5 s.

Black-box, like bench_scale.py: a bulk simulator child with ``--known`` active workflows,
one ``kind = "workflow"`` target each (so ``--known`` scheduler jobs), and the real daemon
as a subprocess.

1. Seed: the daemon runs with a generous budget until the store holds a state for every
   workflow (states and their events, read from the SQLite file), then it is stopped.
2. Measure: the daemon starts again on that store with the default budget (10 req/s, so
   nearly every job waits for its turn); ``ready`` is the time from spawn to the first
   200 from /readyz, then ``stop`` is SIGTERM to exit while the jobs are in flight.

The output ends with one line:

    startstop: known=10000 ready=X s stop=Y s

    .venv/bin/python tests/bench/bench_startstop.py                # 10,000 workflows
    .venv/bin/python tests/bench/bench_startstop.py --known 500    # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench import blackbox as bb  # noqa: E402
from tests.e2e.ops_support import DaemonFactory, free_port  # noqa: E402
from watcher.store import STORE_FILE  # noqa: E402

SEED_POLLING = {
    "requests_per_second": 150,  # the first round spread over known/150 s: no timeouts
    "burst": 50,
    "active_s": 120,  # one round, and a retry for the few that time out on a busy machine
    "idle_s": 120,
    "max_backoff_s": 120,
}
SEEDED = 0.995  # share of the states that must be stored before the measured start


def stored_states(state_dir: Path) -> int:
    """States in the daemon's SQLite store (0 before the file exists)."""
    path = state_dir / STORE_FILE
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM states").fetchone()[0])
    except sqlite3.Error:
        return 0


async def seed(factory: DaemonFactory, cfg: dict[str, object], state_dir: Path, n: int) -> float:
    """Run the daemon until the store knows every workflow; seconds it took."""
    started = time.monotonic()
    daemon = factory.spawn(cfg | {"polling": SEED_POLLING})
    while stored_states(state_dir) < SEEDED * n:
        if not daemon.running():
            raise RuntimeError("seeding daemon exited:\n" + daemon.log_text()[-2000:])
        if time.monotonic() - started > 600:
            raise RuntimeError(f"seeding: {stored_states(state_dir)} of {n} states after 600 s")
        await asyncio.sleep(0.5)
    await bb.stop(daemon, timeout=60)
    print(f"seeded {stored_states(state_dir)} states", file=sys.stderr)
    return time.monotonic() - started


async def measure(known: int, timeout: float) -> tuple[float | None, float, float]:
    with (
        bb.bulk_simulator(known, 1, 1.0, "workflow") as info,
        tempfile.TemporaryDirectory(prefix="bench-startstop-") as tmp,
    ):
        state_dir = Path(tmp) / "state"
        factory = DaemonFactory(Path(tmp))
        try:
            cfg = bb.daemon_config(
                info, state_dir=state_dir, port=free_port(), webhook="json://127.0.0.1:9/"
            )
            cfg["notify"] = {"urls": ["json://127.0.0.1:9/"], "retry_base_s": 60}
            seed_s = await seed(factory, cfg, state_dir, known)
            cfg["http"] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}"}
            async with aiohttp.ClientSession() as http:
                daemon = factory.spawn(cfg)  # the default polling budget
                ready_s = await bb.wait_ready(http, daemon, timeout)
                await asyncio.sleep(1.0)  # let the first round pile up behind the budget
                stop_s = await bb.stop(daemon, timeout=60)
        finally:
            factory.close()
    return ready_s, stop_s, seed_s


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", type=int, default=10_000, help="workflows in the store")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for /readyz")
    args = parser.parse_args(argv)
    ready_s, stop_s, seed_s = asyncio.run(measure(args.known, args.timeout))
    print(f"seeded {args.known} workflows in {seed_s:.1f} s", file=sys.stderr)
    ready = "never" if ready_s is None else f"{ready_s:.2f}"
    stop = "inf" if math.isinf(stop_s) else f"{stop_s:.2f}"
    print(f"startstop: known={args.known} ready={ready} s stop={stop} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
