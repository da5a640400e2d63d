"""watcher.logs: one pipeline for structlog and stdlib loggers; secrets never printed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from watcher import logs

SECRET = "planted-Secret-0123456789"
IAM_TOKEN = "MIIfresh-iam-token-XYZ987"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave the root logger and structlog as the test found them (other tests share the worker)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs._QUIET_LOGGERS}
    config = structlog.get_config()
    structlog.contextvars.clear_contextvars()
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()


def _json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def _configure(**kwargs: Any) -> io.StringIO:
    out = io.StringIO()
    logs.configure_logging(stream=out, **{"fmt": "json", **kwargs})
    return out


def test_secret_keys_in_kwargs_are_masked_and_others_kept() -> None:
    out = _configure()
    structlog.get_logger("t").info(
        "poll.done",
        token="tok-1",
        password="pw-1",
        api_key="key-1",
        authorization="Bearer b-1",
        cookie="c-1",
        sk="sk-1",
        huawei_sk="sk-2",
        security_token="st-1",
        credentials_file="cred-1",
        task="PreCheck",
        disk="ok",
        checks_passed=3,
    )
    text = out.getvalue()
    for planted in ("tok-1", "pw-1", "key-1", "b-1", "c-1", "sk-1", "sk-2", "st-1", "cred-1"):
        assert planted not in text
    (line,) = _json_lines(out)
    assert line["event"] == "poll.done"
    assert line["token"] == logs.MASK
    assert line["task"] == "PreCheck" and line["disk"] == "ok" and line["checks_passed"] == 3
    assert line["level"] == "info" and line["logger"] == "t" and "timestamp" in line


def test_nested_dicts_and_lists_are_redacted() -> None:
    out = _configure()
    config = {
        "credentials": {"access_key": "AK", "secret_key": SECRET},
        "cloud": {"region": "ap-southeast-1", "headers": [{"X-Auth-Token": "hdr-secret"}]},
        "notify": {"urls": [f"mailtos://ops:{SECRET}@smtp.example.com"]},
    }
    structlog.get_logger().info("config.loaded", config=config, pairs=[("cookie", "x")])
    text = out.getvalue()
    assert SECRET not in text and "hdr-secret" not in text
    (line,) = _json_lines(out)
    assert line["config"]["cloud"]["region"] == "ap-southeast-1"
    assert line["config"]["notify"]["urls"] == ["mailtos://ops:****@smtp.example.com"]


def test_urls_in_strings_lose_passwords_and_secret_query_values() -> None:
    out = _configure()
    structlog.get_logger().warning(
        "notify.failed",
        url="json://user:p%40ss@hooks.example.com/x?token=qtok&mode=a&+Authorization=Bearer%20hdr",
        detail="see https://api.example.com/v1?apikey=AKEY1&page=2 and xml://h/?:token=ptok",
    )
    text = out.getvalue()
    for planted in ("p%40ss", "qtok", "Bearer%20hdr", "hdr", "AKEY1", "ptok"):
        assert planted not in text
    (line,) = _json_lines(out)
    assert (
        line["url"] == "json://user:****@hooks.example.com/x?token=****&mode=a&+Authorization=****"
    )
    assert "page=2" in line["detail"]


def test_registered_secrets_are_masked_anywhere_even_url_encoded() -> None:
    out = _configure(secrets=[SECRET, "", "ab"])  # empty and too-short values are ignored
    log = structlog.get_logger()
    log.info(f"message quoting {SECRET}", note=f"prefix{SECRET}suffix")
    log.info("positional %s", SECRET)
    log.info("encoded", where="https://h/?x=planted-Secret-0123456789%20")
    weird = "s3cr/t with space+plus"
    logs.register_secret(weird)
    log.info("in a url", url="https://h/p?q=s3cr%2Ft%20with%20space%2Bplus")
    log.info("form encoded", body="v=s3cr%2Ft+with+space%2Bplus")
    log.info("a cab")
    text = out.getvalue()
    assert SECRET not in text and "s3cr" not in text
    assert _json_lines(out)[-1]["event"] == "a cab"  # "ab" was too short to register


def test_a_token_registered_at_runtime_is_masked_from_then_on() -> None:
    out = _configure()
    log = structlog.get_logger()
    logs.register_secret(IAM_TOKEN)
    log.info("iam.token_refreshed", headers={"X-Subject": IAM_TOKEN})
    logging.getLogger("aiohttp.client").error("request failed with %s", IAM_TOKEN)
    assert IAM_TOKEN not in out.getvalue()
    assert len(_json_lines(out)) == 2


def test_exception_messages_are_redacted_and_locals_never_shown() -> None:
    out = _configure(secrets=[SECRET])

    def fail() -> None:
        api_token = "LOCAL-" + SECRET[::-1]  # a local that show_locals would dump
        raise RuntimeError(f"upstream said no to {SECRET} ({len(api_token)})")

    try:
        fail()
    except RuntimeError:
        structlog.get_logger().exception("poll.crashed")
    text = out.getvalue()
    assert SECRET not in text and SECRET[::-1] not in text
    (line,) = _json_lines(out)
    (exc,) = line["exception"]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"].startswith("upstream said no to ****")
    assert all("locals" not in frame for frame in exc["frames"])


def test_stdlib_records_from_apprise_go_through_the_same_pipeline() -> None:
    out = _configure(secrets=[SECRET])
    structlog.contextvars.bind_contextvars(target="prod")
    apprise_log = logging.getLogger("apprise")
    apprise_log.warning("Failed to send to %s", f"rocket://bot:{SECRET}@chat.example.com/room")
    apprise_log.info("Loaded mailtos://me:hunter22@smtp.example.com", extra={"token": "extra-tok"})
    try:
        raise ConnectionError(f"refused: https://h/?access_token={IAM_TOKEN}")
    except ConnectionError:
        apprise_log.exception("send error")
    text = out.getvalue()
    for planted in (SECRET, "hunter22", "extra-tok", IAM_TOKEN):
        assert planted not in text
    lines = _json_lines(out)
    assert [line["logger"] for line in lines] == ["apprise"] * 3
    assert all(line["target"] == "prod" for line in lines)
    assert lines[0]["event"] == "Failed to send to rocket://bot:****@chat.example.com/room"
    assert lines[1]["token"] == logs.MASK
    assert "access_token=****" in lines[2]["exception"][0]["exc_value"]


def test_object_reprs_are_redacted() -> None:
    class Client:
        def __repr__(self) -> str:
            return f"Client(url='https://u:{SECRET}@h')"

    out = _configure()
    structlog.get_logger().info("client.created", client=Client())
    assert SECRET not in out.getvalue()
    assert _json_lines(out)[0]["client"] == "Client(url='https://u:****@h')"


def test_console_format_is_readable_and_redacted() -> None:
    out = _Tty()
    logs.configure_logging(fmt="console", secrets=[SECRET], stream=out)
    log = structlog.get_logger("c")
    log.info("poll.done", token=SECRET, cluster="prod")
    try:
        raise ValueError(f"bad {SECRET}")
    except ValueError:
        log.exception("poll.crashed")
    text = out.getvalue()
    assert SECRET not in text
    assert "poll.done" in text and "cluster" in text and "Traceback" in text
    assert "ValueError: bad ****" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_console_lines_make_cloud_text_inert() -> None:
    out = _Tty()
    logs.configure_logging(fmt="console", stream=out)
    structlog.get_logger("t").warning(
        "poll.failed", cluster="prod\x1b]0;pwned\x07\x1b[2J\u202eevil\nfake line", n=1
    )
    logging.getLogger("apprise").warning("name: %s", "a\rb\x1b[31mc")
    text = out.getvalue()
    plain = text.replace("\x1b[", "")  # the renderer's own colours on a TTY
    assert "pwned" not in text and "\x07" not in text and "\u202e" not in text
    assert "prod" in plain and "evil fake line" in plain
    assert "\r" not in text
    assert "[2J" not in text and "]0;" not in text


@pytest.mark.parametrize(("stream", "is_json"), [(io.StringIO(), True), (_Tty(), False)])
def test_auto_picks_json_unless_the_stream_is_a_terminal(
    stream: io.StringIO, is_json: bool
) -> None:
    logs.configure_logging(fmt="auto", stream=stream)
    structlog.get_logger().info("hello")
    first = stream.getvalue().splitlines()[0]
    assert first.startswith("{") is is_json


def test_levels_and_noisy_loggers() -> None:
    out = _configure(level="info")
    logging.getLogger("apscheduler.executors.default").info("Running job ...")
    logging.getLogger("aiohttp.access").info("GET /healthz 200")
    logging.getLogger("apscheduler.executors.default").warning("job missed")
    logging.getLogger("asyncio").debug("debug noise")
    structlog.get_logger().debug("dropped")
    structlog.get_logger().info("kept")
    assert [line["event"] for line in _json_lines(out)] == ["job missed", "kept"]


def test_reconfiguring_replaces_the_handler() -> None:
    first = _configure()
    second = _configure(level="warning")
    structlog.get_logger().info("dropped")
    structlog.get_logger().warning("kept")
    assert first.getvalue() == ""
    assert [line["event"] for line in _json_lines(second)] == ["kept"]


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure_logging(level="loud", stream=io.StringIO())


def test_url_secrets_extracts_password_and_secret_query_values() -> None:
    url = "json://bot:p%40ss@h.example.com/x?token=T1&mode=a&+Authorization=Bearer%20Z&:key=K2"
    assert set(logs.url_secrets(url)) == {"p@ss", "T1", "Bearer%20Z", "Bearer Z", "K2"}
    assert logs.url_secrets("https://example.com/?page=1") == []


def test_transient_secrets_rotate_out_but_configured_ones_stay() -> None:
    logs.register_secret("configured-secret-value-0001")
    for i in range(100):  # months of IAM token refreshes
        logs.register_secret(f"refreshed-token-{i:04d}-abcdefgh", transient=True)
    masked = logs.redact_text("configured-secret-value-0001 refreshed-token-0099-abcdefgh")
    assert "configured-secret-value-0001" not in masked
    assert "refreshed-token-0099-abcdefgh" not in masked
    assert len(logs._transient) <= logs._MAX_TRANSIENT
