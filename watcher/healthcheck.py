"""`cce-upgrade-watcher healthcheck`: probe the running daemon's HTTP health endpoint.

Why this module exists: container HEALTHCHECKs and ad-hoc scripts need a probe that works in a
slim image without curl. It uses the stdlib only (no event loop, no aiohttp import cost), talks
directly to the daemon (proxy variables are ignored: a proxy must not answer for 127.0.0.1),
and exits 0 when the endpoint answers 200, 1 otherwise, after printing one line.

The default URL follows $WATCHER_HTTP__LISTEN when it is set (the container image sets it to
0.0.0.0:9851), mapping a wildcard host to loopback; otherwise http://127.0.0.1:9851/healthz.
With --config, the daemon's own configuration decides (http.listen, with the environment and
secret files applied as `run` applies them); only then is the config loader imported.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

__all__ = ["DEFAULT_URL", "default_url", "healthcheck", "probe"]

DEFAULT_URL = "http://127.0.0.1:9851/healthz"
_WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}  # noqa: S104 -- mapped to loopback, not bound


def default_url(listen: str | None = None) -> str:
    """Return the health URL for a `host:port` listen address (default: $WATCHER_HTTP__LISTEN)."""
    listen = os.environ.get("WATCHER_HTTP__LISTEN") if listen is None else listen
    if not listen:
        return DEFAULT_URL
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        return DEFAULT_URL
    if host in _WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """GET `url`; return (healthy, one-line description)."""
    if not url.startswith(("http://", "https://")):
        return False, f"unhealthy: {url} is not an http(s) URL"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    started = time.monotonic()
    try:
        with opener.open(url, timeout=timeout) as response:  # scheme checked above
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"unhealthy: {url}: {reason}"
    elapsed_ms = (time.monotonic() - started) * 1000
    if code == 200:
        return True, f"ok: {url} answered 200 in {elapsed_ms:.0f} ms"
    return False, f"unhealthy: {url} answered {code}"


@click.command("healthcheck")
@click.option(
    "--url",
    default=None,
    envvar="WATCHER_HEALTHCHECK_URL",
    help=f"Endpoint to probe [default: from WATCHER_HTTP__LISTEN, else {DEFAULT_URL}]",
)
@click.option(
    "--timeout",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the answer.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Probe the address this config's daemon listens on (http.listen).",
)
@click.pass_context
def healthcheck(
    ctx: click.Context, url: str | None, timeout: float, config_path: Path | None
) -> None:
    """Exit 0 when the daemon's health endpoint answers 200, 1 otherwise."""
    if url is None and config_path is not None:
        from watcher.config_cli import load_local_or_exit  # noqa: PLC0415  (pydantic)

        url = default_url(load_local_or_exit(config_path).http.listen)
    healthy, line = probe(url or default_url(), timeout)
    click.echo(line)
    ctx.exit(0 if healthy else 1)
