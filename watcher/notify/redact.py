"""A logging filter that keeps apprise's own log records free of a URL's secrets.

apprise prints unmasked URLs and headers at DEBUG/TRACE level (LIBRARIES.md 1.13), and its
records may be handled by loggers we did not configure (a library user's, pytest's), so the
sender installs this filter on apprise's loggers for as long as it lives. The masking rules
themselves are in watcher.redact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from watcher.redact import known_secrets_pattern, redact_text


class RedactingFilter(logging.Filter):
    """Redacts the records of a library logger in place, with the secrets it was given."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = frozenset(secrets)
        self._pattern = known_secrets_pattern(self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record as it is
            return True
        clean = redact_text(message, pattern=self._pattern)
        if clean != message:
            record.msg = clean
            record.args = None
        return True
