"""Prometheus metrics of one daemon process, served at `GET /metrics`.

One `Metrics` object per process, passed to whatever counts: no module-level registry, so
that tests and tools can build as many as they like.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)


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

    def tally(self, queue: str) -> Callable[[str, int], None]:
        """A consumer's counter of settled deliveries: `tally(outcome, n)`."""
        return lambda outcome, n=1: self.consumed.labels(queue, outcome).inc(n)

    def gauge(self, name: str, description: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (spool depth, broker connected, ...)."""
        Gauge(name, description, registry=self.registry).set_function(read)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its media type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
