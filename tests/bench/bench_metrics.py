"""/metrics at scale (issue 12.3): body size, series, and how long a scrape stalls the loop.

The real ``Metrics`` and HTTP server in this process, filled as a daemon with ``--targets``
workflow targets (each one live workflow with ``--tasks`` tasks) would fill them; meanwhile
the loop keeps recording polls at ``--rate`` per second (the daemon's work, and the metric
locks a scrape contends with) and a probe measures loop lag: how late a 5 ms sleep wakes.
``curl`` scrapes from another process, as Prometheus does. The longest garbage collection
during the scrapes is shown too: it stops every thread, the loop's included. Side by side in
one run:

* capped     the daemon's defaults (per-target and per-workflow caps);
* uncapped   every target and workflow with series of its own (the shape before the caps).

    .venv/bin/python tests/bench/bench_metrics.py                 # 10,000 targets, 5 scrapes
    .venv/bin/python tests/bench/bench_metrics.py --targets 30000 --scrapes 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import prometheus_client  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from tests.bench.bench_latency import quantile  # noqa: E402
from tests.http.fakes import StaticStatus  # noqa: E402
from watcher.core.outcome import PollOutcome  # noqa: E402
from watcher.http.feed import EventFeed  # noqa: E402
from watcher.http.server import build_app, start_http  # noqa: E402
from watcher.runtime.metrics import Metrics  # noqa: E402
from watcher.store.sqlite import SqliteStore  # noqa: E402

PROBE_S = 0.005


def fill(metrics: Metrics, targets: int, tasks: int) -> list[str]:
    """Every target polled once (a few failing), each with one live workflow."""
    names = [f"wf-{i:06d}-0000-4000-8000-{i:012d}" for i in range(targets)]
    points = {f"Task{t}": "Running" for t in range(tasks)}
    for i, name in enumerate(names):
        metrics.poll_finished(name, PollOutcome.OK if i % 100 else PollOutcome.TRANSPORT, 0.05)
        metrics.set_workflow(name, name, "Running", points, 3600.0, state="Running")
        metrics.api_response("cce.example", "cce.workflows.show", 200, None, 0.05)
    return names


async def polling(metrics: Metrics, names: list[str], rate: float) -> None:
    """Record ``rate`` polls per second in batches, as finished polls would."""
    i, tick = 0, 0.01
    while True:
        for _ in range(max(1, int(rate * tick))):
            metrics.poll_finished(names[i % len(names)], PollOutcome.OK, 0.05)
            i += 1
        await asyncio.sleep(tick)


async def probe(lags: list[float]) -> None:
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        lags.append(time.perf_counter() - t0 - PROBE_S)


class GcPauses:
    """The longest garbage collection since ``clear`` (any generation, any thread)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        del info
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def close(self) -> None:
        gc.callbacks.remove(self._note)


async def curl(url: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "-", url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return len(out), time.perf_counter() - t0


async def measure(label: str, args: argparse.Namespace, uncapped: bool) -> str:
    registry = CollectorRegistry()
    cap = {"max_workflows": args.targets, "max_targets": args.targets} if uncapped else {}
    metrics = Metrics(registry, **cap)
    names = fill(metrics, args.targets, args.tasks)
    series = sum(len(f.samples) for f in registry.collect())
    gc.collect()
    gc.freeze()  # as the daemon does after start-up
    pauses = GcPauses()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        store = await SqliteStore.open(Path(tmp) / "state.sqlite3")
        app = build_app(
            store=store,
            feed=EventFeed(max_queue=10),
            status=StaticStatus(),
            metrics_registry=registry,
            metrics=metrics,
        )
        server = await start_http(app, "127.0.0.1", 0)
        idle: list[float] = []
        during: list[float] = []
        work = asyncio.create_task(polling(metrics, names, args.rate))
        lags: list[float] = []
        monitor = asyncio.create_task(probe(lags))
        try:
            await asyncio.sleep(1.0)
            idle = list(lags)
            pauses.longest = 0.0
            sizes, walls = [], []
            for _ in range(args.scrapes):
                lags.clear()
                size, wall = await curl(server.url + "/metrics")
                during += lags
                sizes.append(size)
                walls.append(wall)
        finally:
            monitor.cancel()
            work.cancel()
            await server.stop()
            await store.close()
            pauses.close()
            gc.unfreeze()
    ms = 1000
    return (
        f"metrics[{label}]: targets={args.targets} series={series}"
        f" body={max(sizes) / 1e6:.2f} MB scrape p50={quantile(walls, 0.5) * ms:.0f} ms"
        f" loop lag idle max={max(idle) * ms:.1f} ms; during scrapes"
        f" p99={quantile(during, 0.99) * ms:.1f} ms max={max(during) * ms:.1f} ms,"
        f" longest gc {pauses.longest * ms:.1f} ms"
    )


async def run(args: argparse.Namespace) -> int:
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    lines = [await measure("capped", args, uncapped=False)]
    if not args.capped_only:
        lines.append(await measure("uncapped", args, uncapped=True))
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--targets", type=int, default=10_000, help="workflow targets")
    parser.add_argument("--tasks", type=int, default=5, help="tasks per live workflow")
    parser.add_argument("--rate", type=float, default=333.0, help="polls recorded per second")
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--capped-only", action="store_true", help="skip the uncapped shape")
    args = parser.parse_args(argv)
    # As the daemon does (cli.run): no *_created series.
    prometheus_client.disable_created_metrics()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
