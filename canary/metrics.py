"""The daemon's own metrics, in Prometheus' format, served at ``/metrics``.

An ``Observer`` for the engine: every figure is derived from what the engine already
reports (stored events, timed backend calls and provider queries), so the rollout code
knows nothing about Prometheus. Label values come from small, fixed sets (phases, verdicts,
reasons, strategy kinds, provider names) or from gate names, which the specs bound; never
from rollout ids, which would grow without limit.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from canary.events import COMMAND_NAMES, ENDINGS, EventKind, RollbackCause
from canary.model import LIVE, TERMINAL, Event, Rollout

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The `_created` series (one per counter and histogram) only double the output here.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds; backend calls and provider queries take from milliseconds to a timeout (60 s).
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Every rollback says why as data (``cause`` in ``rollback.started``): a bounded label set.
ROLLBACK_REASONS = tuple(cause.value for cause in RollbackCause)


class Metrics:
    """Every metric of one daemon, in a registry of its own (tests make several)."""

    def __init__(self, *, process: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        self.rollouts = Gauge(
            "canary_rollouts",
            "Live rollouts by phase, as stored (refreshed at every scrape)",
            ["phase"],
            registry=r,
        )
        self.finished = Counter(
            "canary_rollouts_finished",
            "Rollouts that ended, by final phase (succeeded, rolled_back, failed)",
            ["phase"],
            registry=r,
        )
        self.started = Counter(
            "canary_rollouts_started", "Rollouts accepted by this daemon", registry=r
        )
        self.steps = Counter(
            "canary_step_transitions",
            "Steps entered (traffic about to move to the next weight), and promotions begun",
            ["to"],
            registry=r,
        )
        self.rollbacks = Counter(
            "canary_rollbacks", "Rollbacks begun, by reason", ["reason"], registry=r
        )
        self.rollback_failures = Counter(
            "canary_rollback_failures",
            "Rollback attempts that left traffic not fully restored (each is retried); alert "
            "on any increase",
            registry=r,
        )
        self.verdicts = Counter(
            "canary_gate_verdicts",
            "Gate results, by gate and verdict",
            ["gate", "verdict"],
            registry=r,
        )
        self.commands = Counter(
            "canary_commands",
            "Commands applied (promote, pause, resume, abort)",
            ["command"],
            registry=r,
        )
        self.backend_seconds = Histogram(
            "canary_backend_call_duration_seconds",
            "Strategy calls to a traffic backend, by strategy kind and operation",
            ["strategy", "operation"],
            buckets=BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "canary_backend_call_errors",
            "Strategy calls that raised (timeouts included), by strategy and operation",
            ["strategy", "operation", "error"],
            registry=r,
        )
        self.provider_seconds = Histogram(
            "canary_provider_query_duration_seconds",
            "Metric provider round trips (one batch of queries), by provider",
            ["provider"],
            buckets=BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "canary_provider_query_errors",
            "Provider round trips that failed or answered an error, by provider",
            ["provider"],
            registry=r,
        )
        self.provider_up = Gauge(
            "canary_provider_up",
            "1 when the metric provider answered its last health check, 0 when it did not",
            ["provider"],
            registry=r,
        )
        self.notification_failures = Counter(
            "canary_notification_failures",
            "Notifications that could not be delivered, by notifier",
            ["notifier"],
            registry=r,
        )
        for phase in sorted(LIVE):
            self.rollouts.labels(phase=phase.value).set(0)
        for phase in sorted(TERMINAL):
            self.finished.labels(phase=phase.value)
        for reason in ROLLBACK_REASONS:
            self.rollbacks.labels(reason=reason)

    # ------------------------------------------------------------ Observer

    def saved(self, rollout: Rollout, events: Sequence[Event]) -> None:
        for event in events:
            match event.kind:
                case EventKind.ROLLOUT_CREATED:
                    self.started.inc()
                case EventKind.STEP_STARTED:
                    self.steps.labels(to="step").inc()
                case EventKind.PROMOTION_STARTED:
                    self.steps.labels(to="promotion").inc()
                case EventKind.ROLLBACK_STARTED:
                    self.rollbacks.labels(reason=RollbackCause(event.data["cause"]).value).inc()
                case EventKind.ROLLBACK_FAILED:
                    self.rollback_failures.inc()
                case EventKind.ANALYSIS_EVALUATED:
                    for result in event.data.get("results", []):
                        self.verdicts.labels(gate=result["gate"], verdict=result["verdict"]).inc()
                case EventKind.HOOK_ANSWERED:  # a hook's verdict is a gate verdict too
                    result = event.data.get("result", {})
                    self.verdicts.labels(gate=result["gate"], verdict=result["verdict"]).inc()
                case kind if kind in ENDINGS:
                    self.finished.labels(phase=rollout.phase.value).inc()
                case kind if kind in COMMAND_NAMES:
                    self.commands.labels(command=COMMAND_NAMES[EventKind(kind)]).inc()

    def backend_call(
        self, strategy: str, operation: str, seconds: float, error: str | None
    ) -> None:
        self.backend_seconds.labels(strategy=strategy, operation=operation).observe(seconds)
        if error is not None:
            self.backend_errors.labels(strategy=strategy, operation=operation, error=error).inc()

    def provider_query(self, provider: str, seconds: float, error: str | None) -> None:
        self.provider_seconds.labels(provider=provider).observe(seconds)
        if error is not None:
            self.provider_errors.labels(provider=provider).inc()

    def notification_failed(self, notifier: str) -> None:
        self.notification_failures.labels(notifier=notifier).inc()

    # ------------------------------------------------------------ scrape

    def set_live(self, rollouts: Iterable[Rollout]) -> None:
        """Set ``canary_rollouts`` from the store's live rollouts (the source of truth)."""
        counts = Tally(r.phase for r in rollouts)
        for phase in LIVE:
            self.rollouts.labels(phase=phase.value).set(counts.get(phase, 0))

    def provider_health(self, provider: str, up: bool) -> None:
        """The result of a provider's health check (``analysis.health``)."""
        self.provider_up.labels(provider=provider).set(1 if up else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
