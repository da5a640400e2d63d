"""Black-box harness for the high-availability tests and benchmark (issue 11 items 4 and 6).

Everything is real and seen from outside: a bulk simulator child (tests/bench/blackbox.py),
daemon replicas as subprocesses sharing one PostgreSQL database, and a webhook receiver in
the test process. The one thing the tests read directly is the database (what was stored,
who holds which lease): it is the shared truth the replicas agree on.

What the webhook gets is made exact: the replicas render chat bodies from a template
directory whose ``chat_body.j2`` lists each event's dedup key on its own line, so every
arrival names exactly the stored events it carries (``KeyHook``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web

from tests.bench import blackbox as bb
from tests.e2e.harness import WebhookReceiver
from tests.e2e.ops_support import DaemonFactory, DaemonProcess, free_port

# The webhook's URLs (names): each keeps its own order, so two show per-URL ordering.
URL_NAMES = ("a", "b")
KEY_PREFIX = "key="
KEYS_TEMPLATE = "{% for e in events %}" + KEY_PREFIX + "{{ e.dedup_key }}\n{% endfor %}"
# Dedup keys of the watcher's store alarms (watcher.store_failed / store_recovered).
SELF_ALERTS = "watcher:store:"
# task.queued is stored but routed nowhere by default (SPEC section 4).
UNROUTED = {"task.queued"}


# -- the webhook ----------------------------------------------------------------------------


@dataclass
class Arrival:
    """One webhook request: which URL (path), when (monotonic), the dedup keys it carried."""

    url: str
    at: float
    keys: tuple[str, ...]


@dataclass
class KeyHook(WebhookReceiver):
    """A webhook that records, per URL path, the dedup keys of each message in order.

    With ``hang_s`` it answers that much later: the message counts as received at once, its
    sender still waits (a send in flight, the send-then-crash window when the sender dies).
    """

    arrivals: list[Arrival] = field(default_factory=list)

    def url_for(self, name: str) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{name}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        keys = tuple(
            line[len(KEY_PREFIX) :].strip()
            for line in str(body.get("message", "")).splitlines()
            if line.startswith(KEY_PREFIX)
        )
        name = request.path.rsplit("/", 1)[-1]
        self.arrivals.append(Arrival(name, time.monotonic(), keys))
        self.bodies.append(body)
        if self.hang_s > 0:  # the message is ours; the sender waits for the answer
            await asyncio.sleep(self.hang_s)
        return web.Response(text="ok")

    def keys_seen(self) -> set[str]:
        return {k for a in self.arrivals for k in a.keys}


def template_dir(tmp: Path) -> Path:
    """A template directory whose chat body lists the dedup keys (see module docstring)."""
    path = tmp / "templates"
    path.mkdir(exist_ok=True)
    (path / "chat_body.j2").write_text(KEYS_TEMPLATE)
    return path


# -- replicas -------------------------------------------------------------------------------


def replica_config(
    info: Mapping[str, Any],
    *,
    tmp: Path,
    index: int,
    hook: KeyHook,
    lease_s: float | None,
    polling: Mapping[str, Any],
    pool_size: int = 4,
) -> dict[str, Any]:
    """One replica's config: the bulk tenant, the PostgreSQL store (DSN from the env), both
    webhook URLs with the dedup-key template, and ``[ha] lease_s`` unless None."""
    cfg = bb.daemon_config(
        dict(info),
        state_dir=tmp / f"state-{index}",
        port=free_port(),
        webhook=hook.url_for(URL_NAMES[0]),
        polling=dict(polling),
    )
    cfg["notify"] = {
        "urls": [{"url": hook.url_for(n), "name": n} for n in URL_NAMES],
        "retry_base_s": 0.2,
        "retry_cap_s": 1,
        "templates": {"template_dir": str(template_dir(tmp))},
    }
    cfg["state"] = {"backend": "postgres", "pool_size": pool_size}
    if lease_s is not None:
        cfg["ha"] = {"lease_s": lease_s}
    return cfg


def spawn_replicas(
    factory: DaemonFactory, configs: Sequence[Mapping[str, Any]], dsn: str
) -> list[DaemonProcess]:
    """Start every replica with the DSN as the secret env ``WATCHER_STATE__DSN``."""
    return [factory.spawn(cfg, env={"WATCHER_STATE__DSN": dsn}) for cfg in configs]


async def wait_all_ready(
    http: aiohttp.ClientSession, replicas: Sequence[DaemonProcess], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    for daemon in replicas:
        left = max(0.5, deadline - time.monotonic())
        if await bb.wait_ready(http, daemon, left) is None:
            status, body = await readyz(http, daemon)
            raise AssertionError(
                f"replica {daemon.pid} not ready ({status} {body}):\n{daemon.log_text()[-1500:]}"
            )


async def readyz(http: aiohttp.ClientSession, daemon: DaemonProcess) -> tuple[int, Any]:
    """(status, body) of GET /readyz; (0, reason) when it does not answer."""
    try:
        async with http.get(f"{daemon.url}/readyz", timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return resp.status, await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return 0, str(exc)


async def ok_polls(http: aiohttp.ClientSession, daemon: DaemonProcess) -> dict[str, float]:
    """Successful polls per ``target`` label, from the replica's /metrics."""
    async with http.get(f"{daemon.url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        body = await resp.text()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("cce_watcher_polls_total{") and 'result="ok"' in line:
            labels, value = line[len("cce_watcher_polls_total{") :].rsplit("} ", 1)
            target = labels.split('target="', 1)[1].split('"', 1)[0]
            out[target] = out.get(target, 0.0) + float(value)
    return out


def owner(holder: str, replicas: Sequence[DaemonProcess]) -> DaemonProcess | None:
    """The replica a lease holder id names: ids are ``hostname-pid-random``."""
    for daemon in replicas:
        if str(daemon.pid) in holder.split("-"):
            return daemon
    return None


# -- the shared database --------------------------------------------------------------------


def leases(dsn: str) -> dict[str, tuple[str, float]]:
    """target -> (holder, seconds until the lease ends) for every unexpired lease row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A released lease ends at '-infinity': only live rows, whose end is finite.
        rows = conn.execute(
            "SELECT target, holder, extract(epoch FROM lease_until - now())::float8"
            " FROM target_leases WHERE lease_until > now() AND isfinite(lease_until)"
        ).fetchall()
    return {str(t): (str(h), float(left)) for t, h, left in rows}


def claims(dsn: str) -> list[str]:
    """Holders of the live delivery claims (a send in flight), one entry per delivery."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT claimed_by FROM deliveries WHERE state = 'pending'"
            " AND claimed_by IS NOT NULL AND claim_until > now()"
        ).fetchall()
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class Stored:
    """One stored event routed to one URL, as the database has it."""

    url: str
    key: str
    seq: int
    kind: str
    workflow_key: str
    delivery_state: str


def routed(dsn: str) -> list[Stored]:
    """Every (URL, event) the store planned a delivery for, with that delivery's state."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT d.url_key, e.dedup_key, e.seq, e.kind, e.workflow_key, d.state"
            " FROM deliveries d JOIN delivery_events de ON de.delivery_id = d.id"
            " JOIN events e ON e.dedup_key = de.dedup_key ORDER BY e.seq"
        ).fetchall()
    return [Stored(str(u), str(k), int(s), str(kd), str(w), str(st)) for u, k, s, kd, w, st in rows]


def stored_events(dsn: str) -> list[tuple[str, int, str, str]]:
    """(dedup_key, seq, kind, workflow_key) of every stored event, in seq order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT dedup_key, seq, kind, workflow_key FROM events ORDER BY seq"
        ).fetchall()
    return [(str(k), int(s), str(kd), str(w)) for k, s, kd, w in rows]


def pending_deliveries(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()
    return int(row[0]) if row else 0


# -- the verdict ----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What arrived against what was stored; ``problems`` lists every broken guarantee."""

    events: int = 0
    lost: int = 0
    duplicated: int = 0
    takeover: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self, label: str = "failover") -> str:
        out = f"{label}: {self.events} events, {self.lost} lost, {self.duplicated} duplicated"
        if self.takeover:
            p50, p99 = quantile(self.takeover, 0.5), quantile(self.takeover, 0.99)
            out += f", takeover p50/p99 {p50:.1f}/{p99:.1f} s"
        return out


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def judge(
    hook: KeyHook,
    dsn: str,
    *,
    active_workflows: Sequence[str],
    crash_at: float | None,
    final_kind: str = "workflow.succeeded",
) -> Verdict:
    """Check the webhook against the store (issue 11 item 4):

    * every event the store routed to a URL arrived there (else it is lost), and every
      routable stored event was routed to every URL (a commit without its deliveries);
    * every active workflow's ``final_kind`` arrived (the scenario played to its end:
      an event the store never recorded is lost too);
    * per URL, messages arrive in commit order: each new message's events come after
      (by seq) every event of the message before it;
    * a message arrives twice only if its first copy came before ``crash_at`` (sent by the
      replica that then crashed before recording it), and at most one such message per URL
      (one send per URL is in flight at a time); nothing arrives twice without a crash.
    """
    verdict = Verdict()
    plan = routed(dsn)
    stored = stored_events(dsn)
    by_key = {k: (s, kd, w) for k, s, kd, w in stored}
    verdict.events = len({p.key for p in plan})
    for url in URL_NAMES:
        want = {p.key for p in plan if p.url == url}
        got = [a for a in hook.arrivals if a.url == url]
        # A store alarm is sent straight to the URLs while the store is away (not through
        # the outbox, so neither planned nor in commit order) and written to it only after
        # the store has been healthy a while, without the URLs it already reached
        # (runtime/selfwatch.py).
        direct = {k for a in got for k in a.keys if k.startswith(SELF_ALERTS)}
        # A routable event must be planned for every URL (default route: all of them).
        unplanned = [k for k, _, kd, _ in stored if kd not in UNROUTED and k not in want | direct]
        if unplanned:
            verdict.problems.append(f"{url}: {len(unplanned)} stored events never planned")
            verdict.lost += len(unplanned)
        seen = {k for a in got for k in a.keys}
        missing = want - seen
        verdict.lost += len(missing)
        if missing:
            verdict.problems.append(f"{url}: {len(missing)} events never arrived")
        unknown = {k for k in seen - set(by_key) if not k.startswith(SELF_ALERTS)}
        if unknown:
            verdict.problems.append(f"{url}: arrived but not stored: {sorted(unknown)[:3]}")
        first: dict[tuple[str, ...], Arrival] = {}
        repeated: set[tuple[str, ...]] = set()
        last_seq = -1
        for arrival in got:
            if arrival.keys in first:
                repeated.add(arrival.keys)
                verdict.duplicated += 1
                continue
            first[arrival.keys] = arrival
            seqs = [by_key[k][0] for k in arrival.keys if k in by_key and k not in direct]
            if seqs and min(seqs) <= last_seq:
                verdict.problems.append(f"{url}: message {seqs} arrived after seq {last_seq}")
            last_seq = max([last_seq, *seqs])
        for keys in repeated:
            if crash_at is None or first[keys].at > crash_at:
                verdict.problems.append(f"{url}: duplicate outside a send-then-crash: {keys}")
        if len(repeated) > 1:
            verdict.problems.append(f"{url}: {len(repeated)} messages repeated (1 in flight)")
        dead = {p.key for p in plan if p.url == url and p.delivery_state == "dead"}
        if dead:
            verdict.problems.append(f"{url}: {len(dead)} events in dead deliveries")
    finals = {w for _, kd, w in by_key.values() if kd == final_kind}
    arrived_finals = {by_key[k][2] for k in hook.keys_seen() if k in by_key}
    for wid in active_workflows:
        if not any(wid in w for w in finals & arrived_finals):
            verdict.lost += 1
            verdict.problems.append(f"workflow {wid}: no {final_kind} delivered")
    return verdict


async def wait_drained(
    hook: KeyHook, dsn: str, *, active: int, timeout: float, final_kind: str = "workflow.succeeded"
) -> None:
    """Until every active workflow's ``final_kind`` is stored, nothing is pending and every
    routed key arrived (bounded: the verdict reports what is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finals = sum(kd == final_kind for _, _, kd, _ in stored_events(dsn))
        if finals >= active and pending_deliveries(dsn) == 0:
            want = {p.key for p in routed(dsn)}
            if want <= hook.keys_seen():
                return
        await asyncio.sleep(0.3)
