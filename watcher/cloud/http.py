"""The one aiohttp ClientSession the watcher uses for every cloud call.

A poller needs short, bounded timeouts (aiohttp's default total is 300 s), a bounded
connection pool per host, and TLS that is always verified, optionally against a private CA
(a corporate proxy, a private cloud). The SSL context is built once here because loading
certificates blocks the loop.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp

from watcher import __version__
from watcher.core.errors import ConfigError

# sock_connect, not connect: aiohttp's ``connect`` also counts the wait for a free pooled
# connection, so a burst of polls queued behind limit_per_host failed as "connect timeout"
# (a transport error, backoff, a warning each: thousands at 30,000 workflows) although
# every connection was healthy. ``total`` still bounds the whole request, wait included.
# No sock_read: ``total`` already bounds a stalled read, and a read timer costs two timer
# heap operations per request (~5 % of an unchanged poll's CPU).
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
USER_AGENT = f"cce-upgrade-watcher/{__version__}"


def ssl_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system trust store plus ``ca_file`` when given.

    The extra CA is added, not substituted, so one session reaches both a private endpoint
    and public ones such as IAM.
    """
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"CA file {str(ca_file)!r} cannot be loaded: {exc}"]) from None
    return context


def make_session(
    *,
    ca_file: str | Path | None = None,
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
    limit: int = 50,
    limit_per_host: int = 8,
) -> aiohttp.ClientSession:
    """Create the process-wide session; call it inside the running loop, close it on shutdown.

    Redirects are not followed by the client (it passes ``allow_redirects=False``) and no
    proxy settings are read from the environment.
    """
    asyncio.get_running_loop()  # RuntimeError outside a loop, before anything is allocated
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=limit_per_host,
        ttl_dns_cache=300,
        ssl=ssl_context(ca_file),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        raise_for_status=False,
        trust_env=False,
    )
