"""HA benchmark (issue 11 item 6): replicas sharing a bulk tenant on one PostgreSQL database.

Three replicas (subprocesses, ``[state] backend = "postgres"``, ``[ha] lease_s``) split
10,000 active workflows polled every 30 s; a simulator child serves the tenant. After a
warm-up (every replica ready, bounded), a measured window reads, black-box only:

* cpu/poll   each replica's utime+stime (/proc) over the window divided by the polls it made
             (its ``cce_watcher_polls_total``), in ms; the line shows the mean over replicas;
* lateness   p99 of ``cce_watcher_schedule_lateness_seconds`` over the window, the replicas'
             histograms summed;
* pg cpu     PostgreSQL's own CPU over the window, % of one core: the postmaster and all
             its children of a private cluster (the default: started here with tests/pg.py),
             or, with ``--dsn``, the backends serving this benchmark's database;
* takeover   after the window the replica holding the most leases is SIGKILLed; seconds
             until a survivor holds each of its leases (lease rows), p50/p99.

The output ends with one line:

    ha: replicas=3 workflows=W cpu/poll=X ms lateness_p99=L ms pg_cpu=P% takeover p50/p99 A/B s

    make bench-ha                       # 10,000 workflows, lease_s 30 (~6 min)
    make bench-ha ARGS=--quick          # 1,000 workflows, lease_s 5 (~1 min)
    .venv/bin/python tests/bench/bench_ha.py --lease-s 0 --replicas 1   # no [ha]: one replica
    .venv/bin/python tests/bench/bench_ha.py --store sqlite   # one replica on SQLite (baseline)

With ``--store sqlite`` the same tenant and polling run on ONE replica with the default
SQLite store: the single-process figures the HA ones are compared with (issue 11 item 6:
"beside the SQLite ones"); pg_cpu and takeover do not apply there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import pg  # noqa: E402
from tests.bench import blackbox as bb  # noqa: E402
from tests.e2e.ops_support import DaemonFactory, DaemonProcess  # noqa: E402
from tests.ha import support as ha  # noqa: E402


@dataclass
class Result:
    replicas: int
    workflows: int
    cpu_ms_per_poll: list[float] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    cpu_pct: list[float] = field(default_factory=list)
    lateness_ms: float = math.nan
    pg_cpu_pct: float = math.nan
    takeover: list[float] = field(default_factory=list)
    ready_s: float = math.nan
    leases: list[str] = field(default_factory=list)  # leases held per replica, over time
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        cpu = sum(self.cpu_ms_per_poll) / len(self.cpu_ms_per_poll) if self.cpu_ms_per_poll else 0
        p50, p99 = ha.quantile(self.takeover, 0.5), ha.quantile(self.takeover, 0.99)
        return (
            f"ha: replicas={self.replicas} workflows={self.workflows}"
            f" cpu/poll={cpu:.2f} ms lateness_p99={self.lateness_ms:.0f} ms"
            f" pg_cpu={self.pg_cpu_pct:.1f}% takeover p50/p99 {p50:.1f}/{p99:.1f} s"
        )

    def detail(self) -> str:
        rows = [
            f"  replica {i}: {polls:.0f} polls, cpu {pct:.1f}%, {ms:.2f} ms/poll"
            for i, (polls, pct, ms) in enumerate(
                zip(self.polls, self.cpu_pct, self.cpu_ms_per_poll, strict=True)
            )
        ]
        rows.append(f"  ready after {self.ready_s:.1f} s")
        rows += [f"  leases held {when}" for when in self.leases]
        if self.takeover:
            rows.append(
                f"  takeover of {len(self.takeover)} leases: max {max(self.takeover):.1f} s"
            )
        rows += [f"  note: {n}" for n in self.notes]
        return "\n".join(rows)


# -- PostgreSQL's own CPU ----------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _children(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(_stat(int(entry.name))[1]) == ppid:
                    out.append(int(entry.name))
    return out


class PgCpu:
    """CPU seconds PostgreSQL spent for us: a private cluster's postmaster with its live
    children and its reaped ones (cutime/cstime), or the backends of one database."""

    def __init__(self, server: pg.Server, dsn: str) -> None:
        self.postmaster: int | None = None
        self.dsn = dsn
        if server.datadir is not None:
            pidfile = server.datadir / "postmaster.pid"
            self.postmaster = int(pidfile.read_text().split()[0])

    def _pids(self) -> list[int]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return [int(r[0]) for r in rows]

    def seconds(self) -> dict[int, float]:
        """pid -> CPU seconds (the postmaster's entry includes its reaped children)."""
        out: dict[int, float] = {}
        if self.postmaster is not None:
            f = _stat(self.postmaster)
            out[self.postmaster] = sum(int(x) for x in f[11:15]) / bb.CLK_TCK
            pids = _children(self.postmaster)
        else:
            pids = self._pids()
        for pid in pids:
            with contextlib.suppress(OSError):
                out[pid] = bb.cpu_seconds(pid)
        return out


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two readings by processes alive at the second one."""
    return sum(after[p] - before.get(p, 0.0) for p in after)


# -- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_database() -> Iterator[tuple[None, None]]:
    """The SQLite baseline: no server at all."""
    yield None, None


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[tuple[pg.Server, str]]:
    """A private cluster (default) or the given server; a private database on it."""
    server = pg.Server(dsn=dsn, origin="--dsn") if dsn else pg.start_private_cluster()
    try:
        with pg.private_database(server, "bench_ha") as db:
            yield server, db
    finally:
        server.stop()


def merged(scrapes: Sequence[bb.Scrape]) -> bb.Scrape:
    """The replicas' lateness histograms summed (one fleet-wide histogram)."""
    buckets: dict[float, float] = {}
    for s in scrapes:
        for le, n in s.lateness.items():
            buckets[le] = buckets.get(le, 0.0) + n
    return bb.Scrape(sum(s.size for s in scrapes), 0.0, buckets, sum(s.polls for s in scrapes))


def lease_counts(dsn: str, replicas: list[DaemonProcess]) -> str:
    """Live leases per replica (in spawn order), and how many no live replica holds."""
    counts = [0] * len(replicas)
    other = 0
    for holder, _ in ha.leases(dsn).values():
        who = ha.owner(holder, replicas)
        if who is None:
            other += 1
        else:
            counts[replicas.index(who)] += 1
    return "/".join(map(str, counts)) + (f" (+{other} others)" if other else "")


async def balanced(
    dsn: str, replicas: list[DaemonProcess], keys: int, timeout: float, result: Result
) -> None:
    """Wait (bounded) until the leases are split fairly: the first replica up takes every
    lease and hands the surplus over in rounds, and the window is meant for the steady
    state, not for that handover."""
    share = math.ceil(keys / len(replicas))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [0] * len(replicas)
        for holder, _ in ha.leases(dsn).values():
            if (who := ha.owner(holder, replicas)) is not None:
                counts[replicas.index(who)] += 1
        if sum(counts) == keys and max(counts) <= share:
            return
        await asyncio.sleep(1.0)
    result.notes.append(f"leases not split fairly after {timeout:.0f} s more")


async def takeover(dsn: str, replicas: list[DaemonProcess], lease_s: float, result: Result) -> None:
    held: dict[int, set[str]] = {d.pid: set() for d in replicas}
    for target, (holder, _) in ha.leases(dsn).items():
        if (who := ha.owner(holder, replicas)) is not None:
            held[who.pid].add(target)
    victim = max(replicas, key=lambda d: len(held[d.pid]))
    lost = held[victim.pid]
    if not lost:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM target_leases").fetchone()
        rows = int(row[0]) if row else 0
        why = "leases not implemented?" if not rows else f"all {rows} leases lapsed: not renewed"
        result.notes.append(f"no live lease: takeover not measured ({why})")
        return
    survivors = [d for d in replicas if d is not victim]
    victim.kill()
    t0 = time.monotonic()
    taken: dict[str, float] = {}
    while len(taken) < len(lost) and time.monotonic() - t0 < 4 * lease_s + 10:
        for target, (holder, _) in ha.leases(dsn).items():
            if target in lost and target not in taken and ha.owner(holder, survivors):
                taken[target] = time.monotonic() - t0
        await asyncio.sleep(0.1)
    result.takeover = [taken.get(t, math.inf) for t in lost]


async def measure(args: argparse.Namespace) -> Result:
    lease_s = args.lease_s if args.lease_s > 0 else None
    interval = args.interval
    rps = max(10.0, 2 * args.workflows / interval)
    polling = {
        "active_s": interval,
        "idle_s": interval,
        "requests_per_second": rps,
        "burst": int(rps),
    }
    result = Result(args.replicas, args.workflows)
    hook = ha.KeyHook()
    await hook.start()
    sqlite = args.store == "sqlite"
    try:
        with (
            no_database() if sqlite else database(args.dsn) as (server, dsn),
            bb.bulk_simulator(args.workflows, 1, 1.0, "workflow") as info,
            tempfile.TemporaryDirectory(prefix="bench-ha-") as tmp,
        ):
            factory = DaemonFactory(Path(tmp))
            configs = [
                ha.replica_config(
                    info,
                    tmp=Path(tmp),
                    index=i,
                    hook=hook,
                    lease_s=lease_s,
                    polling=polling,
                    pool_size=args.pool_size,
                )
                for i in range(args.replicas)
            ]
            del info
            if sqlite:  # the baseline: the default store, in the replica's state_dir
                for cfg in configs:
                    del cfg["state"]
                replicas = [factory.spawn(cfg) for cfg in configs]
            else:
                assert server is not None and dsn is not None
                replicas = ha.spawn_replicas(factory, configs, dsn)
            pg_cpu = PgCpu(server, dsn) if server is not None and dsn is not None else None
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
                    started = time.monotonic()
                    for d in replicas:  # bounded: a slow start is reported, not fatal
                        left = max(1.0, args.warmup - (time.monotonic() - started))
                        if await bb.wait_ready(http, d, left) is None:
                            status, body = await ha.readyz(http, d)
                            result.notes.append(f"replica {d.pid} not ready: {status} {body}")
                    result.ready_s = time.monotonic() - started
                    # Settle: leases split and the first round of polls spread out.
                    await asyncio.sleep(max(0.0, args.settle - result.ready_s))
                    if dsn is not None and lease_s is not None and args.replicas > 1:
                        await balanced(dsn, replicas, args.workflows, args.warmup, result)
                    if dsn is not None:
                        result.leases.append(f"at the window start: {lease_counts(dsn, replicas)}")
                    before = [await bb.scrape(http, d, timeout=60) for d in replicas]
                    cpu0 = [bb.cpu_seconds(d.pid) for d in replicas]
                    pg0 = pg_cpu.seconds() if pg_cpu is not None else {}
                    t0 = time.monotonic()
                    await asyncio.sleep(args.window)
                    pg1 = pg_cpu.seconds() if pg_cpu is not None else {}
                    t1 = time.monotonic()
                    cpu1 = [bb.cpu_seconds(d.pid) for d in replicas]
                    after = [await bb.scrape(http, d, timeout=60) for d in replicas]
                    if dsn is not None:
                        result.leases.append(f"at the window end: {lease_counts(dsn, replicas)}")
                    for d in replicas:
                        if not d.running():
                            raise RuntimeError("replica exited:\n" + d.log_text()[-2000:])
                    for b, a, c0, c1 in zip(before, after, cpu0, cpu1, strict=True):
                        polls = a.polls - b.polls
                        result.polls.append(polls)
                        result.cpu_pct.append(100 * (c1 - c0) / (t1 - t0))
                        result.cpu_ms_per_poll.append(
                            1000 * (c1 - c0) / polls if polls else math.nan
                        )
                    result.lateness_ms = bb.lateness_p99_ms(merged(before), merged(after))
                    if pg_cpu is not None:
                        result.pg_cpu_pct = 100 * cpu_between(pg0, pg1) / (t1 - t0)
                    if dsn is not None and lease_s is not None and args.replicas > 1:
                        await takeover(dsn, replicas, lease_s, result)
                    else:
                        result.notes.append("one replica or no [ha]: takeover not measured")
            finally:
                factory.close()
    finally:
        await hook.stop()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000 workflows, ~1 minute")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--workflows", type=int)
    parser.add_argument("--interval", type=float, default=30.0, help="poll interval, s")
    parser.add_argument("--lease-s", type=float, help="[ha] lease_s; 0: no [ha] table")
    parser.add_argument("--window", type=float, help="measured seconds")
    parser.add_argument("--warmup", type=float, help="max seconds until every replica is ready")
    parser.add_argument("--settle", type=float, help="seconds after start before measuring")
    parser.add_argument("--pool-size", type=int, default=4, help="[state] pool_size")
    parser.add_argument("--dsn", help="an existing server (admin DSN) instead of a private one")
    parser.add_argument(
        "--store",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="sqlite: ONE replica on the default SQLite store, the baseline",
    )
    args = parser.parse_args(argv)
    if args.store == "sqlite":
        args.replicas, args.lease_s = 1, 0.0
    quick = args.quick
    args.workflows = args.workflows or (1_000 if quick else 10_000)
    args.lease_s = args.lease_s if args.lease_s is not None else (5.0 if quick else 30.0)
    args.window = args.window or (20.0 if quick else 120.0)
    args.warmup = args.warmup or (40.0 if quick else 180.0)
    args.settle = args.settle if args.settle is not None else (10.0 if quick else args.interval)
    args.dsn = args.dsn or os.environ.get(pg.DSN_ENV) or None
    print(
        f"bench_ha: {args.replicas} replicas on {args.store}, {args.workflows} workflows every"
        f" {args.interval:g} s, lease_s {args.lease_s:g}, window {args.window:g} s",
        flush=True,
    )
    result = asyncio.run(measure(args))
    print(result.detail())
    print(result.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
