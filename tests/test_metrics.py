"""`GET /metrics`: what was made safe, quarantined or refused, in Prometheus' text format."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractChannel
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import collect
from tests.daemon import SUPPORT_ADDRESS, DaemonBase
from tests.test_smtp import mail, send
from tests.test_web_api import MESSAGE, submit


async def scrape(daemon: DaemonBase) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels."""
    async with daemon.client() as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_case_opens_and_quarantined_inputs_are_counted(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    for n in range(3):
        assert (await submit(daemon, MESSAGE | {"text": f"n{n}"})).status_code == 202
    assert (await asyncio.to_thread(send, daemon, mail("Counted"), [SUPPORT_ADDRESS])).startswith(
        "250"
    )
    broken = b"Subject: no sender\r\n\r\nbody\r\n"
    refused = await asyncio.to_thread(send, daemon, broken, [SUPPORT_ADDRESS], "")  # null sender
    assert refused.startswith("554")
    assert len(await collect(amqp, daemon.names.default, 4)) == 4

    samples = await scrape(daemon)

    web = (("adapter", "web-api"), ("channel", "web"), ("where", "broker"))
    smtp = (("adapter", "smtp"), ("channel", "email"), ("where", "broker"))
    assert samples[("ingest_case_opens_total", web)] == 3
    assert samples[("ingest_case_opens_total", smtp)] == 1
    assert samples[("ingest_quarantined_total", (("adapter", "smtp"), ("channel", "email")))] == 1
    assert samples[("ingest_spool_pending", ())] == 0
    assert samples[("ingest_broker_connected", ())] == 1
