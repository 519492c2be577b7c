"""The dispatcher's handler, measured for the operator: batch size, decision time, and the
time from a case-open being safe (its `x-safe-at` header, set by the pipeline) to its forward
being committed. A wrapper in the composition root, so the dispatcher stays free of metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence

from dispatcher.handling import Delivery, Done, Handler, Verdict
from ingest.metrics import Metrics

SAFE_AT = "x-safe-at"


class Measured:
    """A `Handler` that times the one it wraps."""

    def __init__(self, handler: Handler, metrics: Metrics) -> None:
        self._handler = handler
        self._metrics = metrics
        self._safe_at: dict[int, float] = {}

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Verdict]:
        started = time.perf_counter()
        verdicts = await self._handler.handle(batch)
        self._metrics.decision_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(batch))
        for delivery, verdict in zip(batch, verdicts, strict=True):
            if not (isinstance(verdict, Done) and verdict.publish):
                continue
            if (safe_at := _seconds(delivery.headers.get(SAFE_AT))) is not None:
                self._safe_at[id(verdict)] = safe_at
        return verdicts

    async def committed(self, verdicts: Sequence[Verdict]) -> None:
        now = time.time()
        for verdict in verdicts:
            if (safe_at := self._safe_at.pop(id(verdict), None)) is not None:
                self._metrics.forward_seconds.observe(max(0.0, now - safe_at))
        self._safe_at.clear()  # verdicts never committed (a retried batch) are forgotten
        await self._handler.committed(verdicts)

    async def idle(self) -> None:
        await self._handler.idle()


def _seconds(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
