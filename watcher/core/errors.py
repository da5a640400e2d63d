"""The watcher's exceptions, rooted at WatcherError.

Adapters translate library errors into these at the edge, so the runtime decides retry,
backoff and alerting from the type alone. No exception message ever carries a secret.
"""

from __future__ import annotations


class WatcherError(Exception):
    """Root of every error the watcher raises on purpose."""


class ConfigError(WatcherError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class TransportError(WatcherError):
    """No HTTP answer: timeout, refused or reset connection, TLS failure."""


class BadResponseError(WatcherError):
    """An answer that is not the JSON we expect (not JSON, too large, wrong shape)."""


class CredentialError(WatcherError):
    """Credentials could not be obtained (IAM password login, metadata agency)."""


class ApiError(WatcherError):
    """An HTTP error answer from CCE, IAM or the API gateway in front of them."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        parts = [f"HTTP {status}"]
        if code:
            parts.append(code)
        if message:
            parts.append(message)
        if request_id:
            parts.append(f"request_id={request_id}")
        super().__init__(" ".join(parts))


class AuthError(ApiError):
    """401/403: bad or expired credentials, or missing permission. Never retried hot.

    ``encoded_authorization_message`` is a 403's encoded policy decision, kept so an IAM
    administrator can decode which permission is missing.
    """

    encoded_authorization_message: str | None = None


class ThrottledError(ApiError):
    """429: the gateway or CCE asks us to slow down; ``retry_after`` in seconds if given."""


class ServerError(ApiError):
    """5xx: the cloud side failed; retried with backoff."""


class NotFoundError(ApiError):
    """404 on anything but a workflow."""


class WorkflowGoneError(NotFoundError):
    """404 on a workflow: it was deleted or never existed (``workflow.vanished``)."""


class LeaseLostError(WatcherError):
    """A fenced commit was refused: this replica no longer holds the target's lease (another
    replica took it, or it expired while this one was paused). Not a failure of the target:
    the poll is dropped, nothing was written, and the lease's new holder polls from the
    stored state (PostgreSQL HA, ``watcher.runtime.leases``)."""

    def __init__(self, lease_key: str, holder: str, epoch: int) -> None:
        super().__init__(f"lease on {lease_key!r} lost (held as {holder!r}, epoch {epoch})")
        self.lease_key = lease_key
        self.holder = holder
        self.epoch = epoch
