"""Delivery throughput benchmark (issue 12 item 7): a region-wide incident to one webhook.

The real daemon (subprocess) watches ``--workflows`` active workflows of a bulk simulated
tenant (simulator child) and posts to one local json:// webhook. After a warm-up (ready,
and the first-sight messages delivered), one simulator step moves every workflow at once
(pre-check succeeded + its expiry warning: 2 events each, so 5,000 workflows make 10,000
events). Reported, black-box only:

* events   how many the daemon stored for the incident (its /api/v1/events);
* time     step -> last message, and first -> last message (pure delivery), messages/s;
* order    every message arrives in the daemon's event order for that URL (inversions);
* memory   peak RSS (VmHWM) of the daemon and RSS before/after;
* schedule p99 start lateness of polls during the incident (/metrics histogram), p99 of
           how much later than the interval each workflow was re-polled (simulator side),
           and the daemon's CPU over it.

    make bench-delivery                             # 5,000 workflows -> 10,000 events
    .venv/bin/python tests/bench/bench_delivery.py --workflows 500 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench import blackbox as bb  # noqa: E402
from tests.bench.bench_latency import rss_mb  # noqa: E402
from tests.e2e.harness import WebhookReceiver  # noqa: E402
from tests.e2e.ops_support import DaemonFactory, DaemonProcess, free_port  # noqa: E402


async def stored_events(
    http: aiohttp.ClientSession, daemon: DaemonProcess, after: int
) -> list[dict[str, Any]]:
    """Every event the daemon stored after seq ``after``, in seq order (paged API)."""
    out: list[dict[str, Any]] = []
    while True:
        async with http.get(
            f"{daemon.url}/api/v1/events", params={"after": str(after), "limit": "1000"}
        ) as resp:
            page = await resp.json()
        if not page["events"]:
            return out
        out += page["events"]
        after = int(page["next"])


async def last_seq(http: aiohttp.ClientSession, daemon: DaemonProcess) -> int:
    async with http.get(f"{daemon.url}/api/v1/events", params={"limit": "1"}) as resp:
        return int((await resp.json())["next"])


def inversions(events: list[dict[str, Any]], arrived: list[str]) -> int:
    """Messages that arrived before one whose workflow's events were stored earlier."""
    first: dict[str, int] = {}
    for event in events:
        first.setdefault(str(event["data"]["workflow_id"]), int(event["seq"]))
    ranks = [first[w] for w in arrived if w in first]
    return sum(b < a for a, b in itertools.pairwise(ranks))


async def settle(receiver: WebhookReceiver, want: int, quiet: float, limit: float) -> None:
    """Wait until ``want`` messages arrived, or none for ``quiet`` s, or ``limit`` s passed."""
    started = last_change = time.monotonic()
    seen = len(receiver.bodies)
    while len(receiver.bodies) < want and time.monotonic() - started < limit:
        if len(receiver.bodies) != seen:
            seen, last_change = len(receiver.bodies), time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> int:
    n, interval = args.workflows, args.interval
    rps = max(10.0, 2 * n / interval)
    polling = {
        "active_s": interval,
        "idle_s": interval,
        "requests_per_second": rps,
        "burst": int(rps),
    }
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        with (
            bb.bulk_simulator(n, 1, 1.0, "workflow", interval) as info,
            tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp,
        ):
            active = set(info["active"])
            factory = DaemonFactory(Path(tmp))
            cfg = bb.daemon_config(
                info,
                state_dir=Path(tmp) / "state",
                port=free_port(),
                webhook=receiver.url,
                polling=polling,
            )
            sim_url = info["url"]
            daemon = factory.spawn(cfg)
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                    ready_s = await bb.wait_ready(http, daemon, args.limit)
                    await settle(receiver, n, quiet=interval + 5, limit=args.limit)
                    warm = len(receiver.bodies)
                    seq0 = await last_seq(http, daemon)
                    before = await bb.scrape(http, daemon, timeout=60)
                    gaps0 = (await bb.poll_gaps(http, sim_url))["count"]
                    rss0, cpu0 = rss_mb(daemon.pid), bb.cpu_seconds(daemon.pid)
                    stepped, stepped_wall = time.monotonic(), time.time()
                    async with http.post(f"{sim_url}/_sim/step", json={}) as resp:
                        changes = (await resp.json())["changes"]
                    wanted = len({c["workflow"] for c in changes} & active)
                    first_at: float | None = None
                    while len(receiver.bodies) < warm + wanted:
                        if time.monotonic() - stepped > args.limit or not daemon.running():
                            break
                        if first_at is None and len(receiver.bodies) > warm:
                            first_at = time.monotonic()
                        await asyncio.sleep(0.05)
                    done_at = time.monotonic()
                    cpu1 = bb.cpu_seconds(daemon.pid)
                    rss1, peak = rss_mb(daemon.pid), bb.peak_rss_mb(daemon.pid)
                    after = await bb.scrape(http, daemon, timeout=60)
                    gap = (await bb.poll_gaps(http, sim_url, gaps0))["p99"]
                    events = await stored_events(http, daemon, seq0)
                    await bb.stop(daemon)
            finally:
                factory.close()
    finally:
        await receiver.stop()
    got = len(receiver.bodies) - warm
    arrived = [w for b in receiver.bodies[warm:] if (w := bb.body_workflow(b))]
    total = done_at - stepped
    observed = [datetime.fromisoformat(e["data"]["observed_at"]).timestamp() for e in events]
    detected = max(observed, default=stepped_wall) - stepped_wall
    spread = done_at - (first_at or done_at)
    print(
        f"bench_delivery: {n} workflows polled every {interval:g} s (budget {rps:.0f} req/s),"
        f" one webhook URL; ready {'never' if ready_s is None else f'{ready_s:.1f} s'},"
        f" {warm} first-sight messages before the incident"
    )
    print(
        f"  incident: {len(events)} events stored for {wanted} workflows;"
        f" {got}/{wanted} messages arrived"
    )
    print(
        f"  time: step -> last message {total:.1f} s; first -> last {spread:.1f} s"
        f" ({got / spread if spread > 0 else math.nan:.0f} msg/s); the polls saw the last"
        f" change {detected:.1f} s after the step, so the backlog drained"
        f" {total - detected:.1f} s after that"
    )
    print(f"  order: {inversions(events, arrived)} inversions against the stored event order")
    print(f"  memory: peak RSS {peak:.0f} MB; RSS {rss0:.0f} -> {rss1:.0f} MB")
    print(
        f"  schedule meanwhile: lateness p99 {bb.lateness_p99_ms(before, after):.0f} ms (start)"
        f"; poll-gap lateness p99 {'n/a' if gap is None else f'{gap * 1000:.0f} ms'}"
        f" (simulator side), daemon CPU {100 * (cpu1 - cpu0) / total:.0f}% of a core"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workflows", type=int, default=5000, help="2 events each (5000)")
    parser.add_argument("--interval", type=float, default=30.0, help="poll interval s (30)")
    parser.add_argument("--limit", type=float, default=600.0, help="max wait per phase s (600)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
