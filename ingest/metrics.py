"""Prometheus metrics of one daemon process, served at `GET /metrics`.

One `Metrics` object per process, passed to whatever counts: no module-level registry, so
that tests and tools can build as many as they like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


MAX_REASON_KIND = 60


class Metrics:
    """The counters and gauges the daemon exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.case_opens = Counter(
            "ingest_case_opens",
            "Case-opens made safe, by channel, adapter and where (broker or spool).",
            ["channel", "adapter", "where"],
            registry=self.registry,
        )
        self.quarantined = Counter(
            "ingest_quarantined",
            "Inputs that could not become a case-open and were kept in the quarantine.",
            ["channel", "adapter"],
            registry=self.registry,
        )
        self.not_safe = Counter(
            "ingest_not_safe",
            "Inputs refused for now because neither the broker nor the spool could take them.",
            ["channel", "adapter"],
            registry=self.registry,
        )
        self.consumed = Counter(
            "ingest_consumed",
            "Deliveries settled by a consumer, by queue role (case-open, case-events,"
            " acknowledgements) and outcome (new, duplicate, follow-up, repeat, applied, sent,"
            " retried, dead-lettered).",
            ["queue", "outcome"],
            registry=self.registry,
        )

        self.safe_seconds = Histogram(
            "ingest_safe_seconds",
            "Time from receiving a message to its case-open being safe (broker or spool).",
            ["channel"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "ingest_forward_seconds",
            "Time from a case-open being safe to the dispatcher's forward being committed.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ingest_dispatcher_batch_size",
            "Case-opens the dispatcher decided in one batch.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.decision_seconds = Histogram(
            "ingest_dispatcher_decision_seconds",
            "Time the dispatcher took to decide one batch (store included).",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "ingest_dead_letters",
            "Deliveries dead-lettered, by queue role and the kind of reason: the text before "
            "its first colon (e.g. 'invalid case-open/1 message', 'failed 3 times in the "
            "dispatcher', 'gave up after 11 attempts').",
            ["queue", "reason"],
            registry=self.registry,
        )

    def tally(self, queue: str) -> ConsumerTally:
        """A consumer's counters of what it settled."""
        return ConsumerTally(self, queue)

    def gauge(self, name: str, description: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (spool depth, broker connected, ...)."""
        Gauge(name, description, registry=self.registry).set_function(read)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its media type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass(frozen=True, slots=True)
class ConsumerTally:
    """What one consumer settled, counted once it is committed (`ingest.runner.Tally`)."""

    metrics: Metrics
    queue: str

    def settled(self, outcome: str, count: int) -> None:
        self.metrics.consumed.labels(self.queue, outcome).inc(count)

    def dead_lettered(self, reason: str) -> None:
        kind = reason.split(":", 1)[0].strip()[:MAX_REASON_KIND]
        self.metrics.dead_letters.labels(self.queue, kind).inc()
