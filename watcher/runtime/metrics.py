"""Prometheus metrics of the daemon, on an injected registry.

Why this module exists: the runtime reports what happened (a poll finished, an event was
emitted, a delivery was sent) through a handful of verbs, and this class decides how that
becomes metric series. It never touches prometheus-client's global registry, so tests and
several daemons in one process can each own theirs (client_python's ``registry=`` idiom).

Label cardinality is bounded on purpose: phases and task statuses are open strings from the
cloud, so the per-workflow gauges keep exactly one series per (workflow, phase) and per
(workflow, task, status). When a value changes, the old series is removed, not left at 0,
and ``forget_workflow`` drops every series of a workflow that is no longer watched.

The per-target ``target_up`` and ``target_last_success_timestamp_seconds`` gauges and the
heartbeat gauge exist for alerting (deploy/prometheus/): a series that is absent means "not
watched" or "not configured", never "failing", so no alert fires for what nobody asked for. A
workflow shows at most ``MAX_TASK_SERIES`` tasks (the first, in the API's order): one with
thousands of points must not add thousands of series, nor block the loop updating them.
The ``polls`` counter's ``result`` is a ``core.outcome.PollOutcome`` value.

Bounded at scale (issue 12.3), one model (``SeriesCap``) for workflows and targets:
per-workflow and per-task series exist only for workflows that have not ended (a finished
one is forgotten at once), and for at most ``max_workflows`` of them; a workflow beyond the
cap is counted once in ``workflow_series_dropped_total`` instead. Per-target series
(``polls_total{target}``, ``target_up``, last success) exist for at most ``max_targets``
targets; the polls of a target beyond that count under ``target="_other"`` (no configured
name starts with ``_``), whose ``target_up`` is 0 while any of them fails and whose last
success is the oldest of theirs, so the alerts in deploy/prometheus/ still fire for every
target, naming ``_other``; ``target_series_dropped_total`` counts them. Every metric here
is thread-safe, so the HTTP server renders a scrape in a worker thread while the loop keeps
updating them.
"""

from __future__ import annotations

import contextlib
import itertools
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from watcher import __version__
from watcher.core.models import TERMINAL_PHASES
from watcher.core.outcome import PollOutcome
from watcher.runtime.seriescap import SeriesCap

PREFIX = "cce_watcher_"

DeliveryResult = Literal["sent", "failed", "dead"]

_POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
_LATENESS_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
_UNKNOWN = "unknown"
MAX_TASK_SERIES = 64
MAX_WORKFLOW_SERIES = 500  # workflows with per-workflow series; the rest are counted
MAX_TARGET_SERIES = 500  # targets with per-target series; the rest share OTHER_TARGETS
OTHER_TARGETS = "_other"  # the target label of the targets beyond the cap


class Metrics:
    """Every metric the daemon exports, registered on one CollectorRegistry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        wall_clock: Callable[[], float] = time.time,
        max_workflows: int = MAX_WORKFLOW_SERIES,
        max_targets: int = MAX_TARGET_SERIES,
    ) -> None:
        self.registry = registry
        # Unix time for *_timestamp_seconds: Prometheus compares them with its own time().
        self._wall_clock = wall_clock
        p = PREFIX
        build = Gauge(
            f"{p}build_info",
            "Always 1; the labels say which version runs on which Python.",
            ["version", "python"],
            registry=registry,
        )
        build.labels(version=__version__, python=platform.python_version()).set(1)
        self._target_up = Gauge(
            f"{p}target_up",
            "1 when the last poll of the target succeeded, 0 when it failed.",
            ["target"],
            registry=registry,
        )
        self._target_last_success = Gauge(
            f"{p}target_last_success_timestamp_seconds",
            "Unix time of the last successful poll of the target.",
            ["target"],
            registry=registry,
        )
        self._heartbeats = Counter(
            f"{p}heartbeats",
            "Outbound heartbeat pings, by result (ok, failed); none without a heartbeat URL.",
            ["result"],
            registry=registry,
        )
        self._heartbeat_last_success = _UnsetGauge(
            f"{p}heartbeat_last_success_timestamp_seconds",
            "Unix time of the last heartbeat ping that succeeded; absent until one did.",
            registry,
        )
        self._polls = Counter(
            f"{p}polls",
            "Polls finished, by target and result.",
            ["target", "result"],
            registry=registry,
        )
        # One histogram, not one per target: its 14 series per target were the bulk of a
        # scrape at thousands of targets (issue 12.3); polls_total keeps the per-target view.
        self._poll_seconds = Histogram(
            f"{p}poll_duration_seconds",
            "Wall time of one poll (fetch, diff, persist), over every target.",
            buckets=_POLL_BUCKETS,
            registry=registry,
        )
        self._api_errors = Counter(
            f"{p}api_errors",
            "Cloud API answers that were errors (status >= 400) or no answer.",
            ["status", "code"],
            registry=registry,
        )
        self._api_seconds = Histogram(
            f"{p}api_request_seconds",
            "Cloud API request latency, by route name.",
            ["route"],
            buckets=_API_BUCKETS,
            registry=registry,
        )
        self._events = Counter(
            f"{p}events",
            "Events emitted, by kind and severity.",
            ["kind", "severity"],
            registry=registry,
        )
        self._deliveries = Counter(
            f"{p}deliveries",
            "Delivery attempts finished, by URL key and result.",
            ["url", "result"],
            registry=registry,
        )
        self._maybe_delivered = Counter(
            f"{p}deliveries_maybe_delivered",
            "Delivery attempts whose outcome is unknown: sent, but no answer within the send "
            "timeout. The message is retried, so the service may receive it twice.",
            ["url"],
            registry=registry,
        )
        self._outbox_pending = Gauge(
            f"{p}outbox_pending", "Deliveries waiting to be sent.", registry=registry
        )
        self._outbox_oldest = Gauge(
            f"{p}outbox_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none).",
            registry=registry,
        )
        self._dead = Gauge(
            f"{p}dead_letters", "Deliveries given up after their maximum age.", registry=registry
        )
        self._phase = Gauge(
            f"{p}workflow_phase",
            "1 for the current phase of each watched workflow.",
            ["target", "workflow", "phase"],
            registry=registry,
        )
        self._state = Gauge(
            f"{p}workflow_state",
            "1 for the human state of each watched workflow (Running, Failed, Rolling back, "
            "Rolled back, Succeeded, Cancelled, Not started).",
            ["target", "workflow", "state"],
            registry=registry,
        )
        self._task = Gauge(
            f"{p}task_status",
            "1 for the current status of each task of a watched workflow.",
            ["target", "workflow", "task", "status"],
            registry=registry,
        )
        self._precheck = Gauge(
            f"{p}precheck_expiry_seconds",
            "Seconds until the passed pre-check expires (negative once expired).",
            ["target", "workflow"],
            registry=registry,
        )
        self._lateness = Histogram(
            f"{p}schedule_lateness_seconds",
            "How late a scheduled poll started after its due time (one series, no labels).",
            buckets=_LATENESS_BUCKETS,
            registry=registry,
        )
        self._scheduler_up = Gauge(
            f"{p}scheduler_up", "1 while the polling scheduler runs.", registry=registry
        )
        self._silences = Gauge(
            f"{p}silences_active",
            "Silences in force now (config file and added at run time).",
            registry=registry,
        )
        self._workflow_cap: SeriesCap[tuple[str, str]] = SeriesCap(
            max_workflows,
            Counter(
                f"{p}workflow_series_dropped",
                "Live workflows left without per-workflow series because of the cap "
                "(each counted once).",
                registry=registry,
            ),
        )
        self._target_cap: SeriesCap[str] = SeriesCap(
            max_targets,
            Counter(
                f"{p}target_series_dropped",
                "Targets left without per-target series because of the cap (each counted "
                'once); their polls count under target="_other".',
                registry=registry,
            ),
        )
        self._others = _OtherTargets(self._target_up, self._target_last_success)
        self._stretch = _ReadGauge(
            f"{p}poll_stretch_factor",
            "How much poll intervals are stretched to stay within the request budget "
            "(1 = not at all), by priority (active, idle); the largest over API hosts.",
            "priority",
            registry,
        )
        # Current label values, so a change removes the old series instead of leaving it.
        self._phases: dict[tuple[str, str], str] = {}
        self._states: dict[tuple[str, str], str] = {}
        self._tasks: dict[tuple[str, str], dict[str, str]] = {}
        self._prechecks: set[tuple[str, str]] = set()

    # -- polling and the cloud API -------------------------------------------------------

    def poll_finished(self, target: str, result: PollOutcome, seconds: float) -> None:
        """Count one finished poll, record how long it took and whether the target is up."""
        # The auth series exists at 0 from the first poll on, so that increase() in the
        # CceWatcherAuthFailed alert sees the very first refused poll (0 -> 1).
        outcome = PollOutcome(result)  # a stray string fails here, not as a new label value
        own = self._target_cap.admit(target)
        label = target if own else OTHER_TARGETS
        self._polls.labels(target=label, result=PollOutcome.AUTH.value)
        self._polls.labels(target=label, result=outcome.value).inc()
        self._poll_seconds.observe(max(0.0, seconds))
        if outcome is PollOutcome.LEASE_LOST:  # HA: says nothing about the target
            return
        reached = outcome.reached
        if not own:
            self._others.polled(target, self._wall_clock() if reached else None)
            return
        self._others.forget(target)  # it may have got a slot of its own since
        self._target_up.labels(target=target).set(1 if reached else 0)
        if reached:
            self._target_last_success.labels(target=target).set(self._wall_clock())

    def schedule_lateness(self, seconds: float) -> None:
        """Record one scheduled run's start lateness (the scale benchmark reads its p99)."""
        self._lateness.observe(seconds)

    def forget_target(self, target: str) -> None:
        """Drop a target's series: it is no longer polled (removed, or its one workflow
        finished), so "no successful poll" must not fire for it, and its slot is free."""
        if not self._target_cap.release(target):
            self._others.forget(target)
            return
        _remove(self._target_up, target)
        _remove(self._target_last_success, target)
        for outcome in PollOutcome:
            _remove(self._polls, target, outcome.value)

    def api_response(
        self,
        host: str,
        route: str,
        status: int | None,
        code: str | None,
        seconds: float,
    ) -> None:
        """Record one cloud API request; errors (>= 400, or no response) are also counted.

        ``host`` is accepted for the runtime's convenience but not used as a label: the
        route name already says which API it was, and hosts multiply series per region.
        """
        del host
        self._api_seconds.labels(route=route).observe(max(0.0, seconds))
        if status is None or status >= 400:
            self._api_errors.labels(
                status=str(status) if status is not None else "none", code=code or ""
            ).inc()

    # -- events and delivery -------------------------------------------------------------

    def event_emitted(self, kind: str, severity: str) -> None:
        self._events.labels(kind=kind, severity=str(severity)).inc()

    def delivery_finished(self, url_key: str, result: DeliveryResult | str) -> None:
        self._deliveries.labels(url=url_key, result=result).inc()

    def delivery_maybe_delivered(self, url_key: str) -> None:
        """Count an attempt that got no answer in time (it is retried)."""
        self._maybe_delivered.labels(url=url_key).inc()

    def set_outbox(self, pending: float, oldest_age_s: float, dead: float) -> None:
        self._outbox_pending.set(pending)
        self._outbox_oldest.set(max(0.0, oldest_age_s))
        self._dead.set(dead)

    # -- per-workflow state --------------------------------------------------------------

    def set_workflow(
        self,
        target: str,
        workflow_id: str,
        phase: str | None,
        points: Mapping[str, str | None],
        precheck_expires_in_s: float | None,
        state: str | None = None,
    ) -> None:
        """Show a workflow's current phase, task statuses and pre-check countdown.

        Exactly one series per (workflow, phase) and per (workflow, task) exists afterwards;
        series of values that no longer hold are removed. Tasks missing from ``points`` are
        removed too. A workflow that ended has no series at all, and beyond
        ``max_workflows`` a new one gets none (it is counted once instead).
        """
        wf = (target, workflow_id)
        if phase in TERMINAL_PHASES:
            self.forget_workflow(target, workflow_id)
            return
        if not self._workflow_cap.admit(wf):
            return
        new_phase = phase or _UNKNOWN
        old_phase = self._phases.get(wf)
        if old_phase is not None and old_phase != new_phase:
            _remove(self._phase, target, workflow_id, old_phase)
        self._phase.labels(target=target, workflow=workflow_id, phase=new_phase).set(1)
        self._phases[wf] = new_phase
        if state is not None:
            old_state = self._states.get(wf)
            if old_state is not None and old_state != state:
                _remove(self._state, target, workflow_id, old_state)
            self._state.labels(target=target, workflow=workflow_id, state=state).set(1)
            self._states[wf] = state

        old_tasks = self._tasks.get(wf, {})
        new_tasks = {
            task: status or _UNKNOWN
            for task, status in itertools.islice(points.items(), MAX_TASK_SERIES)
        }
        for task, old_status in old_tasks.items():
            if new_tasks.get(task) != old_status:
                _remove(self._task, target, workflow_id, task, old_status)
        for task, status in new_tasks.items():
            self._task.labels(target=target, workflow=workflow_id, task=task, status=status).set(1)
        self._tasks[wf] = new_tasks

        if precheck_expires_in_s is None:
            if wf in self._prechecks:
                _remove(self._precheck, target, workflow_id)
                self._prechecks.discard(wf)
        else:
            self._precheck.labels(target=target, workflow=workflow_id).set(precheck_expires_in_s)
            self._prechecks.add(wf)

    def forget_workflow(self, target: str, workflow_id: str) -> None:
        """Drop every series of a workflow that is no longer watched."""
        wf = (target, workflow_id)
        self._workflow_cap.release(wf)
        phase = self._phases.pop(wf, None)
        if phase is not None:
            _remove(self._phase, target, workflow_id, phase)
        state = self._states.pop(wf, None)
        if state is not None:
            _remove(self._state, target, workflow_id, state)
        for task, status in self._tasks.pop(wf, {}).items():
            _remove(self._task, target, workflow_id, task, status)
        if wf in self._prechecks:
            _remove(self._precheck, target, workflow_id)
            self._prechecks.discard(wf)

    def watch_stretch(self, read: Callable[[], tuple[float, float]]) -> None:
        """Read the (active, idle) stretch factors at each scrape (issue 12.2)."""

        def labelled() -> dict[str, float]:
            active, idle = read()
            return {"active": active, "idle": idle}

        self._stretch.read = labelled

    def set_scheduler_up(self, up: bool) -> None:
        self._scheduler_up.set(1 if up else 0)

    def set_silences_active(self, count: int) -> None:
        self._silences.set(count)

    def heartbeat_sent(self, ok: bool) -> None:
        """Record one outbound heartbeat ping (the dead-man's switch) and its result."""
        self._heartbeats.labels(result="ok" if ok else "failed").inc()
        if ok:
            self._heartbeat_last_success.set(self._wall_clock())


class _OtherTargets:
    """The ``target="_other"`` series of ``target_up`` and last success: what the alerts
    need to know about the targets beyond the cap, in one series each.

    ``target_up`` is 0 while any of them failed its last poll; the last success is the
    oldest of theirs (read at scrape time), so "no successful poll for 15 minutes" fires
    when any one of them has had none. Both are absent while no such target exists.
    """

    def __init__(self, up: Gauge, last_success: Gauge) -> None:
        self._up = up
        self._last_success = last_success
        self._down: set[str] = set()
        self._polled: set[str] = set()
        self._succeeded: dict[str, float] = {}

    def polled(self, target: str, success_at: float | None) -> None:
        """One poll of ``target``: ``success_at`` is its wall time if it succeeded."""
        self._polled.add(target)
        if success_at is not None:
            self._down.discard(target)
            if not self._succeeded:
                # min() over a dict of floats runs in C without releasing the GIL, so the
                # scrape thread never sees the loop resize it halfway.
                self._last_success.labels(target=OTHER_TARGETS).set_function(
                    lambda: min(self._succeeded.values(), default=0.0)
                )
            self._succeeded[target] = success_at
        else:
            self._down.add(target)
        self._up.labels(target=OTHER_TARGETS).set(0 if self._down else 1)

    def forget(self, target: str) -> None:
        if target not in self._polled:
            return
        self._polled.discard(target)
        self._down.discard(target)
        self._succeeded.pop(target, None)
        if not self._succeeded:
            _remove(self._last_success, OTHER_TARGETS)
        if self._polled:
            self._up.labels(target=OTHER_TARGETS).set(0 if self._down else 1)
        else:
            _remove(self._up, OTHER_TARGETS)


class _UnsetGauge(Collector):
    """A label-less gauge with no sample until it is first set.

    prometheus-client's Gauge always exports a value (0 before any set), which an alert on
    ``time() - gauge`` would read as "last success in 1970" on a daemon without the feature.
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._value: float | None = None
        registry.register(self)

    def set(self, value: float) -> None:
        self._value = value

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registers the name, so a clash with another metric fails at start, not at scrape.
        yield GaugeMetricFamily(self._name, self._documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation)
        if self._value is not None:
            family.add_metric([], self._value)
        yield family


class _ReadGauge(Collector):
    """A gauge with one label whose values are read when scraped (none until a reader)."""

    def __init__(
        self, name: str, documentation: str, label: str, registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self.read: Callable[[], Mapping[str, float]] = dict
        registry.register(self)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation, labels=[self._label])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, number in self.read().items():
            family.add_metric([value], number)
        yield family


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    # A series never created (or already removed) is fine: there is nothing to drop.
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
