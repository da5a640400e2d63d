"""Black-box helpers shared by the scale and delivery benchmarks (issue 12 items 6 and 7).

The daemon is only a subprocess here: a generated config, its HTTP endpoints (/metrics,
/readyz), the webhook it posts to, and /proc for CPU and memory. Nothing imports the
runtime, so the benchmarks keep working when its internals are rewritten.

The simulator runs in a child process (``python tests/bench/blackbox.py --serve ...``)
holding a bulk tenant (watcher/simulator/bulk.py); it prints one JSON line (URL, account,
targets, active workflow ids) and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench.bench_poll import serve_child  # noqa: E402
from tests.e2e.ops_support import DaemonProcess  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
LATENESS = "cce_watcher_schedule_lateness_seconds"
POLLS = b"cce_watcher_polls_total{"
OUTBOX = b"cce_watcher_outbox_pending "
CHAT_LINE = re.compile(r"^\d\d:\d\d UTC  .+$")
WORKFLOW = re.compile(r"workflow ([0-9a-f-]{36})")


# -- the simulator child --------------------------------------------------------------------


def serve(clusters: int, per_cluster: int, active_fraction: float, kind: str, every: float) -> None:
    """Child: a bulk tenant on a loopback port until stdin closes.

    It counts the distinct workflow paths (show or list) fetched so far: one per target once
    every target was polled (``wait_first_round``). With ``every`` > 0 it also records, for
    each such GET, how much later than ``every`` seconds after the previous GET of the same
    path it came: the poll lateness a user sees, whatever the daemon's internals (both in
    GET /_bench/lateness).
    """
    from aiohttp import web

    from watcher.simulator import Simulator
    from watcher.simulator.bulk import populate, targets

    gaps: list[float] = []
    last: dict[str, float] = {}

    @web.middleware
    async def gap(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET" and "/upgradeworkflows" in request.path:
            now = time.monotonic()
            prev = last.get(request.path)
            last[request.path] = now
            if prev is not None and every > 0:
                gaps.append(max(0.0, now - prev - every))
        return cast(web.StreamResponse, await handler(request))

    async def report(request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        window = sorted(gaps[since:])
        p99 = window[min(len(window) - 1, int(0.99 * len(window)))] if window else None
        return web.json_response(
            {"count": len(gaps), "window": len(window), "p99": p99, "paths": len(last)}
        )

    class GapSimulator(Simulator):
        def app(self) -> web.Application:
            app = super().app()
            app.middlewares.append(gap)
            app.router.add_get("/_bench/lateness", report)
            return app

    async def main() -> None:
        sim = GapSimulator(scenarios=["clean_upgrade"], autoplay=False)
        await sim.start("127.0.0.1", 0)
        try:
            tenant = populate(
                sim, clusters=clusters, per_cluster=per_cluster, active_fraction=active_fraction
            )
            a = sim.account
            info = {
                "url": sim.url,
                "account": {"access_key": a.access_key, "secret_key": a.secret_key},
                "targets": targets(sim, tenant, kind),
                "workflows": tenant.workflows,
                "active": tenant.active,
            }
            print(json.dumps(info), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            await sim.stop()

    asyncio.run(main())


async def poll_gaps(http: aiohttp.ClientSession, sim_url: str, since: int = 0) -> dict[str, Any]:
    """The child's poll-gap lateness record: total count, and count and p99 since ``since``;
    ``paths``: the distinct workflow paths fetched so far."""
    async with http.get(f"{sim_url}/_bench/lateness", params={"since": str(since)}) as resp:
        return dict(await resp.json())


@contextlib.contextmanager
def bulk_simulator(
    clusters: int, per_cluster: int, active_fraction: float, kind: str, every: float = 0.0
) -> Iterator[dict[str, Any]]:
    """Start the child simulator; yields its info line (see ``serve``)."""
    args = [str(clusters), str(per_cluster), str(active_fraction), kind, str(every)]
    with serve_child(Path(__file__).resolve(), args) as info:
        yield info


def daemon_config(
    info: dict[str, Any],
    *,
    state_dir: Path,
    port: int,
    webhook: str,
    polling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The daemon's config (TOML shape) for the bulk tenant; ``polling`` overrides defaults."""
    acc = info["account"]
    return {
        "state_dir": str(state_dir),
        "cloud": {"cce_endpoint": info["url"], "iam_endpoint": info["url"], "timeout_s": 10},
        "credentials": {
            "kind": "aksk",
            "access_key": acc["access_key"],
            "secret_key": acc["secret_key"],
        },
        "targets": info["targets"],
        "polling": dict(polling or {}),
        "notify": {"urls": [webhook], "retry_base_s": 1, "retry_cap_s": 5},
        "http": {"enabled": True, "listen": f"127.0.0.1:{port}"},
        "logging": {"level": "warning", "format": "json"},
    }


# -- observing the daemon -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass
class Scrape:
    """One GET /metrics: its size, how long it took, and the lateness histogram."""

    size: int
    seconds: float
    lateness: dict[float, float]  # bucket upper bound -> cumulative count
    polls: float = 0.0  # cce_watcher_polls_total summed over targets and results
    outbox: float | None = None  # cce_watcher_outbox_pending (None: not exported)

    @property
    def kb(self) -> float:
        return self.size / 1024


async def scrape(http: aiohttp.ClientSession, daemon: DaemonProcess, timeout: float) -> Scrape:
    """GET /metrics (bounded); a timeout or error gives size 0 and no histogram."""
    started = time.monotonic()
    try:
        async with http.get(
            f"{daemon.url}/metrics", timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            body = await resp.read()
    except (TimeoutError, aiohttp.ClientError):
        return Scrape(0, time.monotonic() - started, {})
    took = time.monotonic() - started
    buckets: dict[float, float] = {}
    polls, outbox = 0.0, None
    prefix = f'{LATENESS}_bucket{{le="'
    for raw in body.split(b"\n"):
        if raw.startswith(prefix.encode()):
            line = raw.decode()
            le, value = line[len(prefix) :].split('"} ')
            buckets[math.inf if le == "+Inf" else float(le)] = float(value)
        elif raw.startswith(POLLS):
            polls += float(raw.rsplit(b" ", 1)[1])
        elif raw.startswith(OUTBOX):
            outbox = float(raw[len(OUTBOX) :])
    return Scrape(len(body), took, buckets, polls, outbox)


async def wait_first_round(
    http: aiohttp.ClientSession, sim_url: str, targets: int, timeout: float
) -> float | None:
    """Seconds until every target was polled once, None if not in time.

    Counted at the simulator (a distinct workflow path per target), not from /metrics:
    the daemon's per-target series are capped at 500, so those never showed 30,000.

    /readyz turns ready as soon as every poll is *scheduled* within its interval; with a
    tight budget the first sight of a thousand clusters still takes a while, and a change
    made before a workflow was first seen is reported inside its first summary, not as an
    event of its own. Timing change -> webhook, and the measured window, start after this
    round: at 30,000 targets it costs two requests each (the cluster's name once)."""

    async def all_polled() -> bool:
        return bool((await poll_gaps(http, sim_url))["paths"] >= targets)

    return await seconds_until(all_polled, timeout, every=1.0)


async def wait_outbox_empty(
    http: aiohttp.ClientSession, daemon: DaemonProcess, timeout: float
) -> float | None:
    """Seconds until the daemon's outbox is empty, None if not in time.

    The first round reports every workflow it finds (30,000 "detected" messages at 30k);
    their delivery is a one-off that would otherwise fill the measured window of the
    steady poll load."""

    async def empty() -> bool:
        return (await scrape(http, daemon, timeout=10)).outbox == 0

    return await seconds_until(empty, timeout, every=1.0)


async def seconds_until(
    check: Callable[[], Awaitable[bool]], timeout: float, *, every: float
) -> float | None:
    """Seconds until ``check()`` is true (asked every ``every`` s), None if not in time."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(every)
    return None


def lateness_p99_ms(before: Scrape, after: Scrape) -> float:
    """p99 start lateness between two scrapes, interpolated within its histogram bucket
    (as Prometheus' histogram_quantile does); nan when the daemon exports no histogram."""
    if not after.lateness:
        return math.nan
    delta = sorted((le, n - before.lateness.get(le, 0.0)) for le, n in after.lateness.items())
    total = delta[-1][1]
    if total <= 0:
        return math.nan
    rank, low, below = 0.99 * total, 0.0, 0.0
    for le, n in delta:
        if n >= rank:
            if math.isinf(le):
                return low * 1000  # beyond the last bound: report the bound
            return (low + (le - low) * (rank - below) / max(n - below, 1e-9)) * 1000
        low, below = le, n
    return math.nan


async def sim_requests(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/_sim/requests") as resp:
        return int((await resp.json())["total"])


async def ready(http: aiohttp.ClientSession, daemon: DaemonProcess) -> bool:
    try:
        async with http.get(f"{daemon.url}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False


async def wait_ready(
    http: aiohttp.ClientSession, daemon: DaemonProcess, timeout: float
) -> float | None:
    """Seconds until /readyz answers 200, or None if it did not within ``timeout``."""

    async def running_and_ready() -> bool:
        if not daemon.running():
            raise RuntimeError("daemon exited:\n" + daemon.log_text()[-2000:])
        return await ready(http, daemon)

    return await seconds_until(running_and_ready, timeout, every=0.5)


def log_mentions(daemon: DaemonProcess, word: str) -> int:
    """How many of the daemon's log lines mention ``word`` (e.g. a budget warning)."""
    return sum(word in line for line in daemon.log_text().splitlines())


async def stop(daemon: DaemonProcess, timeout: float = 30.0) -> float:
    """SIGTERM; seconds until it exited (killed after ``timeout``: returns inf)."""
    import signal

    started = time.monotonic()
    daemon.send(signal.SIGTERM)
    while time.monotonic() - started < timeout:
        if not daemon.running():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    daemon.kill()
    return math.inf


def chat_lines(body: dict[str, Any]) -> int:
    """Events in one webhook message (the chat body has one ``HH:MM UTC  text`` line each)."""
    return sum(bool(CHAT_LINE.match(line)) for line in str(body.get("message", "")).splitlines())


def body_workflow(body: dict[str, Any]) -> str | None:
    """The workflow id a webhook message is about (its last line names it)."""
    found = WORKFLOW.findall(str(body.get("message", "")))
    return found[-1] if found else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bulk simulator child (see module docstring)")
    parser.add_argument(
        "--serve", nargs=5, metavar=("CLUSTERS", "PER", "FRACTION", "KIND", "EVERY"), required=True
    )
    args = parser.parse_args(argv)
    clusters, per, fraction, kind, every = args.serve
    serve(int(clusters), int(per), float(fraction), kind, float(every))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
