"""Benchmark: CPU per poll, ours vs the official SDK, side by side (SPEC.md 11, issue 12).

Runs the simulator in a child process (so this process's CPU time is the client's only),
clones N ``clean_upgrade`` workflows (each with its own cluster), then measures ``--runs``
runs, each of them back to back in ONE process:

* ours, unchanged poll: ``WorkflowWatch.poll`` -- the daemon's real poll path: fetch (signed
  GET), parse, the unchanged check -- with bounded concurrency;
* ours, poll with a change: the simulator steps every workflow first (untimed), so each poll
  fetches, parses, diffs (``engine.evaluate``), plans one delivery to one URL and commits
  state, events and delivery to a real WAL SQLite file (``SqliteStore.commit_poll``);
* the floor: a bare aiohttp GET of the same URLs, signed (every request must carry its
  signature, the SDK's too), the body read and not parsed: no correct poll through aiohttp
  (a fixed library choice) can cost less;
* the SDK: ``huaweicloudsdkcce.v3.CceClient.show_upgrade_work_flow`` for every workflow,
  sequentially (the SDK is synchronous).

Then, once: ours sequentially (the SDK's loop shape) and fetch + parse only. Warm-up rounds
(first sight, cluster names, connections) come first. CPU is ``time.process_time()`` of this
process (user + system, all threads). The budget: ours at least 10x less CPU per poll than
the SDK's loop in EVERY run, for the unchanged poll and for the poll with a change.

This is a report, not a test: it always exits 0 and prints BUDGET MET / BUDGET MISSED.

    .venv/bin/python tests/bench/bench_poll.py                 # 1000 workflows, 5 runs
    .venv/bin/python tests/bench/bench_poll.py --quick         # 100 workflows, 2 runs
    .venv/bin/python tests/bench/bench_poll.py --lateness 30   # + scheduler lateness, RSS
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUDGET_RATIO = 10.0
UNCHANGED = "ours: unchanged poll"
CHANGED = "ours: poll with a change (diff+commit+delivery)"
SDK = "SDK: show_upgrade_work_flow loop"
FLOOR = "floor: signed aiohttp GET, body not parsed"
REPO = Path(__file__).resolve().parents[2]


# -- the simulator child process ---------------------------------------------------------


def serve(count: int) -> None:
    """Child: run a simulator with ``count`` cloned workflows until stdin closes."""
    from watcher.simulator import start_simulator

    async def main() -> None:
        async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
            await sim.add_workflows("clean_upgrade", count)
            a = sim.account
            info = {
                "url": sim.url,
                "account": {
                    "access_key": a.access_key,
                    "secret_key": a.secret_key,
                    "project_id": a.project_id,
                    "region": a.region,
                },
                "targets": sim.targets()[-count:],
            }
            print(json.dumps(info), flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.read)  # parent closes stdin: stop

    asyncio.run(main())


@contextlib.contextmanager
def serve_child(script: Path, args: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Run ``script --serve ARGS`` (a simulator child process), yield the one JSON line it
    prints when ready, and stop it by closing its stdin (shared with blackbox.py)."""
    proc = subprocess.Popen(
        [sys.executable, str(script), "--serve", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulator child exited with {proc.wait()}")
        yield json.loads(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- measurement -------------------------------------------------------------------------


@dataclass
class RunRows:
    """One run: ours (unchanged, changed), the aiohttp floor and the SDK, back to back."""

    unchanged: Row
    changed: Row
    floor: Row
    sdk: Row


@dataclass
class Row:
    name: str
    calls: int
    cpu_s: float
    wall_s: float
    sys_s: float = 0.0  # the kernel's share of cpu_s (loopback TCP is charged to the sender)

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000.0 * self.cpu_s / self.calls

    @property
    def per_second(self) -> float:
        return self.calls / self.wall_s


def sys_time() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def measure(name: str, calls: int, run: Callable[[], None]) -> Row:
    cpu0, wall0, sys0 = time.process_time(), time.perf_counter(), sys_time()
    run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return Row(name, calls, cpu, wall, sys_time() - sys0)


@contextlib.contextmanager
def _profiled(on: bool) -> Iterator[None]:
    """``--profile``: cProfile one phase and print its top functions by own time."""
    if not on:
        yield
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine may be busy
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats("tottime")
        stats.print_stats(30)
        stats.print_stats("watcher", 25)  # our own functions: what a change here can save


async def bounded(jobs: Sequence[Callable[[], Awaitable[Any]]], concurrency: int) -> None:
    """Run every job, at most ``concurrency`` in flight; any failure aborts the benchmark."""
    it = iter(jobs)

    async def worker() -> None:
        for job in it:
            await job()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(jobs)))))


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# -- ours ----------------------------------------------------------------------------------


async def bench_ours(
    info: dict[str, Any],
    args: argparse.Namespace,
    db_dir: Path,
) -> tuple[list[RunRows], list[Row], dict[str, Any]]:
    """Every phase of ours, and the SDK's loop beside it in each run (see the module)."""
    from yarl import URL

    from watcher.cloud.auth import AkSkAuth
    from watcher.cloud.client import CceClient
    from watcher.cloud.http import make_session
    from watcher.core import health
    from watcher.core.events import TargetRef
    from watcher.core.policy import Policy, PollPolicy
    from watcher.core.ports import SystemClock
    from watcher.notify.routing import plan
    from watcher.notify.url import NotifyUrl
    from watcher.runtime.poller import TargetHealth, WatchContext, WorkflowWatch
    from watcher.store.sqlite import SqliteStore

    account, targets = info["account"], info["targets"]
    n, concurrency = len(targets), args.concurrency
    extra: dict[str, Any] = {}
    store = await SqliteStore.open(db_dir / "bench.sqlite3")
    # The daemon's pool (limit_per_host=8) would cap in-flight requests below
    # --concurrency; size it to the concurrency under test.
    session = make_session(limit=max(concurrency, 1), limit_per_host=max(concurrency, 1))
    # One notification URL: a change plans (and stores) one delivery, as in the daemon.
    urls = [NotifyUrl(key="bench", url="json://127.0.0.1:9/", display="json://127.0.0.1")]
    runs: list[RunRows] = []
    rows: list[Row] = []
    try:
        client_auth = AkSkAuth(account["access_key"], account["secret_key"])
        client = CceClient(
            session,
            endpoint=info["url"],
            auth=client_auth,
            project_id=account["project_id"],
        )
        committed: list[int] = [0]

        def on_committed(events: list[Any]) -> None:
            committed[0] += len(events)

        ctx = WatchContext(
            store=store,
            plan=lambda events, now: plan(events, urls, (), (), now),
            policy=Policy(),
            poll=PollPolicy(),
            clock=SystemClock(),
            on_committed=on_committed,
        )
        watches = []
        for t in targets:
            ref = TargetRef(
                name=t["name"],
                region=t["region"],
                project_id=t["project_id"],
                cluster_id=t["cluster_id"],
                api=t["api"],
            )
            watches.append(
                WorkflowWatch(
                    client=client,
                    target=ref,
                    workflow_id=t["workflow_id"],
                    health=TargetHealth(ref, health.TargetHealth()),
                )
            )

        async def poll_round(c: int) -> None:
            await bounded([functools.partial(poll_ok, w) for w in watches], c)

        async def poll_ok(w: WorkflowWatch) -> None:
            await w.poll(ctx)
            if w.last_error is not None:
                raise RuntimeError(f"poll of {w.key} failed: {w.last_error}")

        async def fetch_round(c: int) -> None:
            await bounded(
                [
                    functools.partial(
                        client.show_workflow, w.target.cluster_id, w.workflow_id, api="cce"
                    )
                    for w in watches
                ],
                c,
            )

        # The floor: what any correct poll through aiohttp costs at least: the GET with the
        # signature every request must carry, the body read and not parsed.
        accept = {"Accept": "application/json"}
        floor_urls = [
            URL(
                f"{info['url']}/api/v3/projects/{account['project_id']}/clusters/"
                f"{w.target.cluster_id}/operation/upgradeworkflows/{w.workflow_id}",
                encoded=True,
            )
            for w in watches
        ]

        async def bare_get(url: URL) -> None:
            headers = await client_auth.sign("GET", url, accept, b"")
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status != 200:
                    raise RuntimeError(f"floor GET failed: HTTP {response.status}")
                await response.read()

        async def floor_round(c: int) -> None:
            await bounded([functools.partial(bare_get, u) for u in floor_urls], c)

        async def step_all() -> None:
            # Untimed: every cloned workflow shares one timeline, so one step moves all.
            async with session.post(f"{info['url']}/_sim/step", json={}) as response:
                response.raise_for_status()

        async def timed(
            name: str,
            round_fn: Callable[[int], Awaitable[None]],
            c: int,
            rounds: int,
            before: Callable[[], Awaitable[None]] | None = None,
        ) -> Row:
            cpu = wall = sys_s = 0.0
            for _ in range(rounds):
                if before is not None:
                    await before()
                cpu0, wall0, sys0 = time.process_time(), time.perf_counter(), sys_time()
                with _profiled(args.profile == name):
                    await round_fn(c)
                cpu += time.process_time() - cpu0
                wall += time.perf_counter() - wall0
                sys_s += sys_time() - sys0
            return Row(name, n * rounds, cpu, wall, sys_s)

        await poll_round(concurrency)  # warm-up: first sight, cluster names, connections
        await poll_round(concurrency)  # and the first unchanged poll (caches filled)
        events_before = committed[0]
        for _ in range(args.runs):
            unchanged = await timed(UNCHANGED, poll_round, concurrency, args.rounds)
            changed = await timed(CHANGED, poll_round, concurrency, 1, before=step_all)
            floor = await timed(FLOOR, floor_round, concurrency, args.rounds)
            sdk = bench_sdk(info, args.rounds)  # side by side, in the same run
            runs.append(RunRows(unchanged, changed, floor, sdk))
        extra["events_per_changed_poll"] = (committed[0] - events_before) / (n * args.runs)
        rows.append(await timed("ours: full poll, sequential", poll_round, 1, args.rounds))
        fetch_only = f"ours: fetch+parse only, {concurrency} in flight"
        rows.append(await timed(fetch_only, fetch_round, concurrency, args.rounds))
        extra["rss_after_ours_mb"] = current_rss_mb()
        if args.lateness > 0:
            extra["lateness"] = await lateness_phase(watches, ctx, args.lateness, args.interval)
    finally:
        await session.close()
        await store.close()
    return runs, rows, extra


async def lateness_phase(
    watches: list[Any], ctx: Any, seconds: float, interval: float
) -> dict[str, Any]:
    """The daemon's PollScheduler running every watch at a fixed interval for ``seconds``."""
    from watcher.runtime.scheduler import PollScheduler

    scheduler = PollScheduler(lateness_window=1_000_000)
    scheduler.start()

    def job(w: Any) -> Callable[[], Awaitable[float | None]]:
        async def run() -> float | None:
            await w.poll(ctx)
            return interval

        return run

    for i, w in enumerate(watches):
        scheduler.add(w.key, job(w), first_delay=interval * i / len(watches))
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    runs = scheduler.runs
    await scheduler.shutdown(10.0)
    q = scheduler.lateness_quantile
    return {
        "workflows": len(watches),
        "interval_s": interval,
        "seconds": seconds,
        "runs": runs,
        "cpu_share": cpu / seconds,
        "p50_ms": 1000 * (q(0.50) or 0.0),
        "p99_ms": 1000 * (q(0.99) or 0.0),
        "max_ms": 1000 * (q(1.0) or 0.0),
        "rss_mb": current_rss_mb(),
    }


# -- the SDK ---------------------------------------------------------------------------------


@functools.cache
def _sdk_loop(url: str, access_key: str, secret_key: str, project_id: str) -> Any:
    """The SDK client and its requests, built once (the loop is what is measured)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=ImportWarning)
    from huaweicloudsdkcce.v3 import CceClient
    from huaweicloudsdkcore.auth.credentials import BasicCredentials

    credentials = BasicCredentials(access_key, secret_key, project_id)
    builder = CceClient.new_builder().with_credentials(credentials).with_endpoints([url])
    return builder.build()


def bench_sdk(info: dict[str, Any], rounds: int) -> Row:
    from huaweicloudsdkcce.v3 import ShowUpgradeWorkFlowRequest

    a = info["account"]
    client = _sdk_loop(info["url"], a["access_key"], a["secret_key"], a["project_id"])
    requests = [
        ShowUpgradeWorkFlowRequest(cluster_id=t["cluster_id"], upgrade_workflow_id=t["workflow_id"])
        for t in info["targets"]
    ]

    def one_round() -> None:
        for request in requests:
            response = client.show_upgrade_work_flow(request)
            if response.status_code != 200:
                raise RuntimeError(f"SDK call failed: {response.status_code}")

    one_round()  # warm-up (connections)
    calls = len(requests) * rounds
    return measure(SDK, calls, lambda: _repeat(one_round, rounds))


def _repeat(fn: Callable[[], None], times: int) -> None:
    for _ in range(times):
        fn()


# -- report ----------------------------------------------------------------------------------


def report(
    runs: list[RunRows], rows: list[Row], extra: dict[str, Any], args: argparse.Namespace
) -> None:
    print(
        f"bench_poll: {args.workflows} workflows, {args.runs} runs of {args.rounds} round(s) "
        f"(changed: 1 round, every workflow one step), loop {args.loop}, "
        f"python {platform.python_version()}, load {os.getloadavg()[0]:.2f}, "
        f"nproc {os.cpu_count()}, {platform.machine()}"
    )
    header = (
        f"{'run':>3} {'':44} {'CPU ms/poll':>12} {'(sys ms)':>9} {'polls/s':>8} {'SDK/ours':>9}"
    )
    print(header)
    print("-" * len(header))
    for i, run in enumerate(runs, 1):
        for row in (run.unchanged, run.changed, run.floor, run.sdk):
            shown = (
                "" if row is run.sdk else f"{run.sdk.cpu_ms_per_call / row.cpu_ms_per_call:8.1f}x"
            )
            print(f"{i:>3} {_line(row)} {shown:>9}")
    for row in rows:
        print(f"{'':>3} {_line(row)}")
    print(f"events per changed poll: {extra.get('events_per_changed_poll'):.2f}")
    print(f"peak RSS {maxrss_mb():.0f} MB; RSS after ours: {extra.get('rss_after_ours_mb'):.0f} MB")
    late = extra.get("lateness")
    if late:
        print(
            f"schedule lateness, {late['workflows']} workflows every {late['interval_s']:g} s "
            f"for {late['seconds']:g} s ({late['runs']} runs, {late['cpu_share']:.0%} of a CPU): "
            f"p50 {late['p50_ms']:.1f} ms, p99 {late['p99_ms']:.1f} ms, "
            f"max {late['max_ms']:.1f} ms; RSS {late['rss_mb']:.0f} MB"
        )
    for name, pick in (
        ("unchanged", lambda r: r.unchanged),
        ("changed", lambda r: r.changed),
        ("signed aiohttp GET", lambda r: r.floor),
    ):
        ratios = [r.sdk.cpu_ms_per_call / pick(r).cpu_ms_per_call for r in runs]
        shown = ", ".join(f"{x:.1f}x" for x in ratios)
        if pick(runs[0]) is runs[0].floor:
            print(f"FLOOR: {name}, SDK/floor CPU per run = {shown} (no aiohttp poll beats it)")
            continue
        verdict = "BUDGET MET" if min(ratios) >= BUDGET_RATIO else "BUDGET MISSED"
        print(
            f"{verdict}: {name} poll, SDK/ours CPU per run = {shown} "
            f"(need >= {BUDGET_RATIO:g}x in every run)"
        )


def _line(row: Row) -> str:
    sys_ms = 1000.0 * row.sys_s / row.calls
    return f"{row.name:44} {row.cpu_ms_per_call:12.3f} {sys_ms:9.3f} {row.per_second:8.0f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--workflows", type=int, default=1000, help="workflows to poll (1000)")
    p.add_argument("--runs", type=int, default=5, help="side-by-side runs (5, at most 7)")
    p.add_argument("--rounds", type=int, default=2, help="unchanged rounds per run (2)")
    p.add_argument("--concurrency", type=int, default=32, help="our polls in flight (32)")
    p.add_argument("--quick", action="store_true", help="smoke run: 100 workflows, 1 round")
    p.add_argument(
        "--lateness",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also run the scheduler this long and report start lateness p99 and RSS",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="poll interval of every workflow in the --lateness phase (5; SPEC 11 uses 30)",
    )
    p.add_argument(
        "--profile",
        choices=[UNCHANGED, CHANGED],
        metavar="PHASE",
        help=f"cProfile one phase ({UNCHANGED!r} or {CHANGED!r}); figures then include it",
    )
    p.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="ours on this event loop (uvloop: to compare; `pip install uvloop` first)",
    )
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the simulator child
    args = p.parse_args(argv)
    if args.quick:
        args.workflows, args.rounds, args.runs = 100, 1, 2
    if not 1 <= args.runs <= 7:  # each changed round uses one of the scenario's 9 steps
        p.error("--runs must be 1..7")
    return args


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop measured no gain over asyncio's loop (docs: "Poll benchmark"), so the daemon
    does not use it; ``--loop uvloop`` repeats that comparison."""
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    from watcher.logs import configure_logging

    configure_logging(level="warning")  # as the daemon configures it, minus info lines
    with (
        serve_child(Path(__file__).resolve(), [str(args.workflows)]) as info,
        tempfile.TemporaryDirectory() as tmp,
        asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner,
    ):
        runs, rows, extra = runner.run(bench_ours(info, args, Path(tmp)))
    report(runs, rows, extra, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
