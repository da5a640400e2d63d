"""The outcome of one poll: the one spelling shared by health, the poller and metrics.

Why this module exists: the outcome used to be spelled three ways (a health literal, the
poller's strings and a metrics literal) that had drifted apart. The values are the ``result``
label of ``cce_watcher_polls`` and the ``last_error_kind`` of a target's health, so they
must never change. The runtime classifies an exception into one (``runtime/poller.py``);
this module stays pure and knows nothing of where the failure came from.
"""

from __future__ import annotations

from enum import StrEnum


class PollOutcome(StrEnum):
    """How one poll (of a workflow or of a cluster's workflow list) ended."""

    OK = "ok"
    GONE = "gone"  # a clean 404: the target answered as expected
    AUTH = "auth"
    THROTTLED = "throttled"
    SERVER = "server"
    BAD_RESPONSE = "bad_response"
    API = "api"
    TRANSPORT = "transport"  # other cloud and credential failures: no usable answer
    STORE = "store"  # the state store failed
    INTERNAL = "internal"  # anything else: a bug or an odd value nothing anticipated
    # Another replica holds the target now (PostgreSQL HA): the commit was fenced off. Not a
    # failure of the target; it is not recorded in the target's health.
    LEASE_LOST = "lease_lost"

    @property
    def reached(self) -> bool:
        """True when the target answered as expected (``target_up`` is 1)."""
        return self in _REACHED


_REACHED = frozenset({PollOutcome.OK, PollOutcome.GONE})
