"""How the tests find or start PostgreSQL (tests/pg.py), proven for real.

A fresh machine has no server, so the private-cluster path is exercised here even where a
server answers on 127.0.0.1:5432; and the failure and opt-out paths are checked through a
real pytest run, since "never skip silently" is a property of what pytest reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests import pg
from tests.store.factories import T0, FakeClock, make_event, make_state
from watcher.core.ports import PlannedDelivery
from watcher.store.postgres import PostgresStore

REPO = Path(__file__).resolve().parents[2]


def _unused_dsn() -> str:
    return f"host=127.0.0.1 port={pg.free_port()} user=postgres dbname=postgres connect_timeout=2"


@pytest.mark.timeout(300)
async def test_a_private_cluster_starts_serves_a_store_and_is_removed() -> None:
    if os.environ.get(pg.SKIP_ENV, "") not in ("", "0"):
        pytest.skip(f"PostgreSQL tests skipped: {pg.SKIP_ENV} is set")
    port = pg.free_port()  # nothing listens there: the cluster must be ours
    assert pg.answers(f"host=127.0.0.1 port={port} user=postgres connect_timeout=2") is not None
    try:
        server = pg.start_private_cluster(port)
    except pg.PgUnavailable as exc:
        pytest.fail(f"PostgreSQL unavailable: {exc}", pytrace=False)
    datadir = server.datadir
    try:
        assert datadir is not None and datadir.is_dir()
        assert f"port={port}" in server.dsn.replace("'", "")
        with pg.private_database(server, "provisioning") as dsn:
            store = await PostgresStore.open(dsn, clock=FakeClock())
            try:
                new = await store.commit_poll(
                    "wf", make_state(seq=1), [make_event("k")], [PlannedDelivery("u", ("k",))]
                )
                assert [e.dedup_key for e in new] == ["k"]
                assert [d.url_key for d in await store.due_deliveries(T0)] == ["u"]
            finally:
                await store.close()
        if os.geteuid() == 0:  # initdb refuses root: the cluster runs as postgres
            with psycopg.connect(server.dsn) as conn:
                row = conn.execute("SELECT current_setting('data_directory')").fetchone()
            assert row is not None and Path(row[0]) == datadir
            assert datadir.stat().st_uid != 0
    finally:
        server.stop()
    assert datadir is not None and not datadir.exists()
    assert pg.answers(server.dsn) is not None  # stopped


def test_an_unreachable_env_dsn_fails_with_one_line_and_no_fallback() -> None:
    with pytest.raises(pg.PgUnavailable) as caught:
        pg.resolve({pg.DSN_ENV: _unused_dsn()})
    message = str(caught.value)
    assert message.startswith(f"{pg.DSN_ENV} is set but the server does not answer: ")
    assert "\n" not in message


def _run_pytest(env_update: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_TEST_", "PYTEST_"))}
    env.update(env_update)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-ra",
            "-p",
            "no:cacheprovider",
            "tests/store/test_store_contract.py",
            "-k",
            "test_ping_and_close and postgres",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_postgres_tests_fail_loudly_without_a_server() -> None:
    proc = _run_pytest({pg.DSN_ENV: _unused_dsn()})
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "PostgreSQL unavailable: WATCHER_TEST_PG_DSN is set but the server does not answer" in (
        proc.stdout
    )
    assert "1 error" in proc.stdout and "skipped" not in proc.stdout


def test_postgres_tests_skip_only_when_the_caller_opts_out() -> None:
    proc = _run_pytest({pg.DSN_ENV: _unused_dsn(), pg.SKIP_ENV: "1"})
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "SKIPPED" in proc.stdout and "WATCHER_TEST_SKIP_PG is set" in proc.stdout
    assert "1 skipped" in proc.stdout
