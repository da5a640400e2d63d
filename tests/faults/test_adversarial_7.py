"""Issue 7 probed as an adversary: variants of each item beyond the issue's own examples.

Every test here failed before its fix. Cloud bodies go through the client's real decoder
and the decoded values through a real SQLite file and a real UTF-8 stream, the edges where
an odd value used to fail every poll or crash ``check``.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import running
from tests.e2e.ops_support import to_toml
from watcher.cloud.responses import parse_error_body, parse_json_object, parse_retry_after
from watcher.core.cadence import failure_delay
from watcher.core.models import Workflow
from watcher.core.timeparse import TimestampError, parse_timestamp, parse_timestamp_lenient
from watcher.notify.targets import parse_url
from watcher.textsafe import inert

# -- item 2: odd timestamps are "unknown" or a sane value, never an error ---------------


@pytest.mark.parametrize(
    "text",
    [
        "２０２４-01-01T00:00:00Z",  # full-width digits: "\d" took them
        "2024-01-01 00:00:00 +0099 UTC",  # 99 minutes is no offset
        "2024-01-01T00:00:00+01:75",
        "2024-01-01 00:00:00 +2500 UTC",
        "0000-01-01 00:00:00 +0000 UTC",
        "10000-01-01T00:00:00Z",
    ],
)
def test_impossible_timestamps_are_unknown(text: str) -> None:
    assert parse_timestamp_lenient(text) is None


def test_leap_second_is_a_time_not_unknown() -> None:
    assert parse_timestamp("2016-12-31 23:59:60 +0000 UTC") == datetime(
        2016, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert parse_timestamp("2016-12-31T23:59:60Z") is not None


@pytest.mark.parametrize("value", [123, 1.5, True, [], {}])
def test_a_non_string_timestamp_is_a_timestamp_error(value: Any) -> None:
    # Was AttributeError ('int' object has no attribute 'strip'): no caller catches that.
    with pytest.raises(TimestampError):
        parse_timestamp(value)
    assert parse_timestamp_lenient(value) is None


# -- item 2: hostile JSON values never fail the poll, nor any later write ---------------


def _store_roundtrip(tmp_path: Path, value: Any) -> None:
    """Write ``value`` the way the store does (ensure_ascii=False, allow_nan=False)."""
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute(
        "INSERT INTO t VALUES (?)",
        (json.dumps(value, ensure_ascii=False, allow_nan=False),),
    )
    db.commit()
    db.close()


def _workflow_body(name: str, extra: str = "") -> bytes:
    # ``name`` goes in raw (not json.dumps'd) so that a test can write JSON escapes.
    return (
        '{"metadata": {"uid": "wf-1", "name": "' + name + '"' + extra + "},"
        ' "spec": {"clusterID": "c1", "clusterVersion": "v1.28", "targetVersion": "v1.29"},'
        ' "status": {"phase": "Running"}}'
    ).encode()


def test_lone_surrogate_in_a_name_decodes_to_storable_printable_text(tmp_path: Path) -> None:
    # JSON allows "\ud800"; decoded raw it made every store commit and every print fail.
    data = parse_json_object(_workflow_body("prod-\\ud800-\\udfff"), "cce.show_workflow")
    workflow = Workflow.from_api(data)
    assert workflow.name == "prod-\ufffd-\ufffd"
    _store_roundtrip(tmp_path, workflow.model_dump(mode="json"))
    io.TextIOWrapper(io.BytesIO(), encoding="utf-8").write(inert(workflow.name or ""))
    # a valid pair is still one character
    assert parse_json_object(b'{"a": "\\ud83d\\ude00"}', "x") == {"a": "\U0001f600"}
    assert parse_error_body(b'{"error_code": "X", "error_msg": "bad \\ud800"}')[1] == "bad \ufffd"


def test_nan_and_infinity_literals_are_null(tmp_path: Path) -> None:
    data = parse_json_object(_workflow_body("c", ', "x": NaN, "y": [Infinity, -Infinity]'), "w")
    assert data["metadata"]["x"] is None and data["metadata"]["y"] == [None, None]
    _store_roundtrip(tmp_path, data)  # allow_nan=False no longer meets a float nan


def test_a_byte_that_is_not_utf8_does_not_fail_the_poll() -> None:
    body = _workflow_body("prod").replace(b"prod", b"pr\xff\xfeod")
    assert Workflow.from_api(parse_json_object(body, "w")).name == "pr\ufffd\ufffdod"


# -- item 8: invisible and unencodable characters are neutralised ---------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "a\u200bb",  # zero-width space
        "a\u200db",  # zero-width joiner
        "a\u2060b",  # word joiner
        "a\u00adb",  # soft hyphen
        "a\U000e0041\U000e0042b",  # tag characters (invisible ASCII smuggling)
        "a\ufff9b",  # interlinear annotation anchor
        "a\U000e0001b",  # language tag
    ],
)
def test_invisible_format_characters_are_removed(hostile: str) -> None:
    assert inert(hostile) == "ab"
    assert inert(hostile, multiline=True) == "ab"


def test_lone_surrogate_is_replaced_so_output_can_be_encoded() -> None:
    out = inert("a\ud800b")
    assert out == "a\ufffdb"
    out.encode("utf-8")  # stdout, an e-mail body, a log line: all need this


def test_spaces_and_private_use_survive() -> None:
    assert inert("a\u00a0b\ue000c") == "a\u00a0b\ue000c"
    assert inert("x\ny\tz", multiline=True) == "x\ny\tz"


# -- item 9: a secret in a URL fragment is masked --------------------------------------


def test_secret_in_url_fragment_is_masked() -> None:
    url = parse_url("json://example.com/hook#fragSECRETvalue1")
    assert "fragSECRETvalue1" in url.secrets
    assert "fragSECRETvalue1" not in url.redact("POST failed for #fragSECRETvalue1")
    assert "fragSECRETvalue1" not in url.display


def test_public_fragment_channel_stays_readable() -> None:
    url = parse_url("rockets://user:rcPASS12@rocket.example.com/#channel")
    assert url.redact("sent to #channel") == "sent to #channel"


# -- item 3: a Retry-After too large for a float is capped, not ignored ---------------


@pytest.mark.parametrize("header", ["9" * 400, "1e309", "1" + "0" * 309])
def test_retry_after_beyond_float_range_waits_the_maximum(header: str) -> None:
    # "1e300" waited max_backoff_s while a larger (RFC-valid, all digits) value was
    # dropped as garbage, so the server's "slow down" was ignored and the next try came
    # after the ordinary 1 s backoff.
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert failure_delay(1, 1.0, 300.0, 0.5, retry_after=seconds) == 300.0
    assert failure_delay(1, 1.0, 300.0, 0.5, retry_after=parse_retry_after("1e300")) == 300.0


@pytest.mark.parametrize("header", ["nan", "inf", "-Infinity", "", "  ", "5, 10", "0x10", "soon"])
def test_retry_after_garbage_is_ignored(header: str) -> None:
    assert parse_retry_after(header) is None


# -- item 8 end to end: other line breaks and invisible characters, through every edge --

# Line breaks that are not "\n" (NEL, LINE/PARAGRAPH SEPARATOR, VT, FF), C1 controls, BEL,
# an OSC 8 hyperlink closed by BEL, and invisible characters (zero-width, tag characters
# spelling hidden text, soft hyphen, word joiner).
EVIL_2 = (
    "\x85Subject: nel\u2028Subject: ls\u2029Subject: ps\x0bSubject: vt\x0cSubject: ff"
    "\x9b31m\x9d0;t\x9c\x07\x1b]8;;http://evil\x07lnk\x1b]8;;\x07"
    "\u200b\u200c\u200d\u2060\u00ad\U000e0068\U000e0069\ufff9"
)
_UNSAFE_2 = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u2060-\u2064\u00ad"
    "\U000e0000-\U000e007f\ufff9-\ufffb\u202a-\u202e\u2066-\u2069]"
)


def _toml_str(value: str) -> str:
    """A TOML basic string with every non-ASCII or control character escaped (astral ones
    as \\UXXXXXXXX: TOML takes no surrogate pairs)."""
    out = []
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code > 0xFFFF:
            out.append(f"\\U{code:08X}")
        else:
            out.append(f"\\u{code:04X}")
    return '"' + "".join(out) + '"'


def _assert_inert_2(text: str, where: str) -> None:
    bad = sorted({f"U+{ord(c):04X}" for c in _UNSAFE_2.findall(text)})
    assert not bad, f"{where} printed raw characters {bad}: {text!r}"
    for line in text.splitlines():  # splitlines() splits at NEL, LS, PS, VT, FF too
        assert not line.lstrip().startswith("Subject:"), f"{where}: forged line {line!r}"


async def test_other_line_breaks_and_invisible_text_are_inert_everywhere(tmp_path: Path) -> None:
    scenario = tmp_path / "hostile2.toml"
    name = _toml_str("prod" + EVIL_2)
    scenario.write_text(
        f"""
description = "other breaks and invisible characters"
precheck_validity = 3600
[cluster]
id = "0a1b2c3d-0777-11ef-9a01-0255ac100777"
name = {name}
version = {_toml_str("v1.27" + EVIL_2)}
api = "cce"
[workflow]
id = "7c3e1d2a-0777-4a5b-9c8d-0e1f2a3b4777"
target_version = {_toml_str("v1.28" + EVIL_2)}
[precheck]
message = {_toml_str("failed" + EVIL_2)}
[[precheck.items]]
name = "NodeOSCheck"
level = "Fatal"
kind = "Exception"
group = "NodeCheck"
message = {_toml_str("node" + EVIL_2)}
[[steps]]
at = 1
point = "PreCheck"
status = "Running"
[[steps]]
at = 2
point = "PreCheck"
status = "Failed"
""",
        encoding="utf-8",
    )
    async with running(tmp_path, [str(scenario)]) as h:
        for _ in range(3):
            await h.step()
        await h.settle()
        assert h.smtp.messages and h.webhook.bodies
        target = h.sim.targets()[0]
        config = tmp_path / "config.toml"
        acc = h.sim.account
        config.write_text(
            to_toml(
                {
                    "state_dir": tmp_path / "state",
                    "cloud": {"cce_endpoint": h.sim.url, "iam_endpoint": h.sim.url},
                    "credentials": {
                        "kind": "aksk",
                        "access_key": acc.access_key,
                        "secret_key": acc.secret_key,
                    },
                    "targets": [
                        {
                            "name": "hostile",
                            "region": target["region"],
                            "project_id": target["project_id"],
                            "cluster_id": target["cluster_id"],
                        }
                    ],
                    "notify": {"urls": ["console://"]},
                }
            )
        )
        code, out, err = await _cli("check", "--config", str(config))
        assert code == 1, err
        assert "Subject: nel" in out  # shown, but inside the row
        _assert_inert_2(out + err, "check")
    code, out, err = await _cli("events", "--config", str(config))
    assert code == 0, err
    _assert_inert_2(out + err, "events")
    for msg in h.smtp.messages:
        _assert_inert_2(str(msg["Subject"]), "e-mail subject")
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        _assert_inert_2(body.get_content().replace("\r\n", "\n"), "e-mail body")
    for payload in h.webhook.bodies:
        _assert_inert_2(payload["title"] + "\n" + payload["message"], "webhook message")


async def _cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- item 7: a SQLite file of another application is "not a watcher database" ----------


def _foreign_database(path: Path, table: str) -> None:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (a, b, c)")
    db.execute(f"INSERT INTO {table} VALUES (1, 2, 3)")  # noqa: S608 (a test constant)
    db.commit()
    db.close()


def _store_cli(tmp_path: Path, state_dir: Path, command: str) -> Any:
    from tests.faults.test_self_watch import cli, write_config

    return cli(command, "--config", str(write_config(tmp_path, state_dir)))


@pytest.mark.parametrize("command", ["run", "events"])
def test_a_foreign_sqlite_file_is_named_not_a_watcher_database(
    tmp_path: Path, command: str
) -> None:
    from tests.faults.test_self_watch import assert_one_clear_line
    from watcher.store import STORE_FILE

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    _foreign_database(state_dir / STORE_FILE, "events")
    result = _store_cli(tmp_path, state_dir, command)
    assert_one_clear_line(result, str(state_dir / STORE_FILE), "not a watcher database")
    assert "move it aside" in result.stderr


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    from watcher.store import STORE_FILE

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    path = state_dir / STORE_FILE
    _foreign_database(path, "shopping_list")
    result = _store_cli(tmp_path, state_dir, "events")
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {"shopping_list"}, tables
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a watcher database" in result.stderr


# -- item 9: a lowercase-only token in a generic webhook's path is still a secret ------


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("hooks/abcdefghijklmnopqrstuvwxyzabcd", "abcdefghijklmnopqrstuvwxyzabcd"),
        ("notify/abcdefabcdefabcdef", "abcdefabcdefabcdef"),
    ],
)
async def test_lowercase_path_token_is_masked_in_notify_test_debug_output(
    tmp_path: Path, path: str, token: str
) -> None:
    from tests.e2e.harness import WebhookReceiver
    from tests.faults.test_self_watch import write_config

    receiver = WebhookReceiver()
    await receiver.start()
    try:
        config = write_config(tmp_path, tmp_path / "state")
        config.write_text(config.read_text().replace('level = "info"', 'level = "debug"'))
        url = f"json://127.0.0.1:{receiver.port}/{path}"
        code, out, err = await _cli("notify-test", "--config", str(config), "--notify", url)
    finally:
        await receiver.stop()
    assert code == 0, out + err
    assert receiver.bodies  # really delivered
    assert "POST" in out + err, out + err  # apprise's/urllib3's debug lines were printed
    assert token not in out + err
    # ordinary words stay readable
    assert parse_url(f"json://example.com/{path.split('/', maxsplit=1)[0]}/x1").redact(
        "notify hooks"
    ) == ("notify hooks")


# -- items 1/2: a listed workflow whose uid cannot be addressed never fails polls -------


@pytest.mark.slow
async def test_a_listed_workflow_with_an_unusable_uid_is_skipped_not_polled_forever(
    tmp_path: Path,
) -> None:
    """CCE lists a workflow whose uid is no valid URL path segment. It was spawned as a
    watch whose every poll raised ValueError (check_id), forever: an "internal" failed
    poll each time, counted against the whole target's health."""
    from tests.e2e.test_discovery import cluster_target

    async with running(tmp_path, ["clean_upgrade"], configure=cluster_target) as h:
        [wf] = h.sim.world.workflows.values()
        good = json.loads(wf.render())
        odd = json.loads(wf.render())
        odd["metadata"]["uid"] = "bad uid/../x"
        body = json.dumps({"kind": "List", "apiVersion": "v3", "items": [good, odd]})
        h.sim.add_fault("body", body=body, path_contains="upgradeworkflows", count=1)
        for _ in range(3):
            await h.wait_polled()
        assert not any("bad uid" in key for key in h.daemon.watches), list(h.daemon.watches)
        [name] = list(h.daemon.watching.healths)
        assert h.daemon.watching.healths[name].failures == 0
        assert not h.daemon.registry.get_sample_value(
            "cce_watcher_polls_total", {"target": name, "result": "internal"}
        )


@pytest.mark.slow
async def test_a_workflow_whose_first_diff_failed_once_is_watched_on_the_next_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.test_discovery import cluster_target
    from watcher.runtime.poller import WorkflowWatch

    async with running(tmp_path, ["clean_upgrade"], configure=cluster_target) as h:
        [cluster] = h.daemon.discoveries.values()
        real_apply = WorkflowWatch.apply
        calls = {"n": 0}

        async def flaky_apply(self: WorkflowWatch, ctx: Any, workflow: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:  # the fault: one diff fails (cannot be made from outside)
                raise RuntimeError("injected: first diff failed once")
            return await real_apply(self, ctx, workflow)

        monkeypatch.setattr(WorkflowWatch, "apply", flaky_apply)
        for _ in range(3):
            await h.wait_polled()
        assert calls["n"] >= 2
        assert cluster.last_error is None
        assert h.daemon.watches, "the listed workflow is never watched"
        [watch] = h.daemon.watches.values()
        assert watch.state is not None and watch.last_error is None
        [uid] = cluster.known
        assert uid == watch.workflow_id  # known only once diffed


# -- items 1/3/7: no configured duration can overflow a date --------------------------


def _cli_sync(*args: str) -> Any:
    from tests.faults.test_self_watch import cli

    return cli(*args)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("notify.max_age", "1e20"),  # timedelta() itself overflowed: a traceback
        ("notify.max_age", '"99999999999d"'),
        ("policy.repeat_interval", '"999999999d"'),  # valid timedelta; now + it passes 9999
        ("policy.late_after", '"900000d"'),
    ],
)
def test_an_absurd_duration_is_a_config_error_not_a_traceback(
    tmp_path: Path, key: str, value: str
) -> None:
    from tests.faults.test_self_watch import write_config

    config = write_config(tmp_path, tmp_path / "state")
    table, name = key.split(".")
    text = config.read_text()
    if f"[{table}]" in text:
        text = text.replace(f"[{table}]\n", f"[{table}]\n{name} = {value}\n", 1)
    else:
        text = f"[{table}]\n{name} = {value}\n" + text
    config.write_text(text)
    result = _cli_sync("config", "validate", "--config", str(config))
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode != 0, output
    assert f"{key}: a duration must be at most" in output, output


def test_a_silence_for_longer_than_the_bound_is_refused_cleanly(tmp_path: Path) -> None:
    from tests.faults.test_self_watch import write_config

    config = str(write_config(tmp_path, tmp_path / "state"))
    result = _cli_sync(
        "silence", "add", "--config", config, "--target", "p", "--comment", "x",
        "--for", "99999999999d",
    )  # fmt: skip
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 2 and result.stderr.startswith("error: for")


@pytest.mark.parametrize(
    "args",
    [
        ("--until", "0001-01-01T00:00:00+01:00"),
        ("--start", "9999-12-31T23:00:00Z"),
    ],
)
def test_silence_times_out_of_range_are_an_input_error(
    tmp_path: Path, args: tuple[str, str]
) -> None:
    from tests.faults.test_self_watch import write_config

    config = str(write_config(tmp_path, tmp_path / "state"))
    result = _cli_sync(
        "silence", "add", "--config", config, "--target", "p", "--comment", "x", *args
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-500:]
    assert result.returncode == 2 and result.stderr.startswith("error:")


# -- item 5: a reload that edits the slow URL itself (its timeout, its name) ------------


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "edit",
    [
        "send_timeout",
        # Naming the unnamed URL changes its key ('json-1' -> 'slowhook'): the reload
        # moves its pending deliveries (and its send in flight) to the new key.
        "name",
    ],
)
async def test_a_reload_editing_the_slow_url_repeats_and_loses_nothing(
    tmp_path: Path, edit: str
) -> None:
    """The operator sees a slow service, raises its send_timeout_s (or names the URL) and
    sends SIGHUP while a send is in flight and messages are queued behind it."""
    import signal
    from collections import Counter
    from functools import partial

    from tests.e2e.crash_support import DaemonProcess, write_config
    from tests.faults.delivery_support import (
        FlakyReceiver,
        deliveries,
        receipts_by_delivery,
        state_shows,
        tweak_config,
        wait_for,
    )
    from watcher.simulator import start_simulator
    from watcher.store import STORE_FILE

    receiver = FlakyReceiver()
    receiver.delay_s = 2.0
    await receiver.start()
    db = tmp_path / f"state-{edit}" / STORE_FILE
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        config = write_config(tmp_path, sim=sim, receiver_url=receiver.url, name=edit)
        tweak_config(config, url_options={"send_timeout_s": 30})
        daemon = DaemonProcess(config, tmp_path / f"{edit}.log")
        await daemon.start()
        log = daemon.log_tail
        try:
            await wait_for(lambda: len(receiver.receipts) == 1, 20, "the first message", log)
            for _ in range(3):
                change = (await sim.step())["changes"][0]
                await wait_for(partial(state_shows, db, change), 10, f"step {change}", log)
            await wait_for(lambda: receiver.active == 1, 10, "a send in flight", log)
            text = config.read_text()
            if edit == "send_timeout":
                config.write_text(text.replace("send_timeout_s = 30", "send_timeout_s = 60"))
            else:
                config.write_text(text.replace("send_timeout_s = 30", 'name = "slowhook"'))
            assert config.read_text() != text
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            await wait_for(
                lambda: len(receiver.receipts) >= 4 and receiver.active == 0,
                40,
                "four messages",
                log,
            )
            await receiver.wait_quiet(2.5, 10.0)
            assert daemon.running, log()
        finally:
            await daemon.terminate()
            await receiver.stop()
    stored = deliveries(db)
    order = [i for _, i in receipts_by_delivery(receiver.receipts, stored)]
    assert [i for i, n in Counter(order).items() if n > 1] == [], f"sent again: {order}"
    assert order == sorted(order), f"out of order: {order}"
    assert len(order) == len({frozenset(d.event_keys) for d in stored}), (order, stored)


# -- item 2: one huge value never makes a huge (refused) message nor blocks the loop ----


def test_a_megabyte_check_item_message_is_cut_in_the_notification() -> None:
    import time
    from dataclasses import replace

    from watcher.notify.templates import MAX_BODY_LEN, Renderer, sample_event

    big = "x" * 1_000_000
    item = {"name": "NodeOSCheck", "message": big}
    event = replace(sample_event(), details={"failed_items": [item] * 50})
    renderer = Renderer()
    for flavor in ("chat", "email"):
        started = time.monotonic()
        message = renderer.render([event], flavor)  # type: ignore[arg-type]
        assert time.monotonic() - started < 0.5
        assert len(message.body) < MAX_BODY_LEN + 100, len(message.body)  # was 50 MB
        assert "more characters" in message.body
