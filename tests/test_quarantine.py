"""Quarantine entries of any payload kind replay through `ingest quarantine replay`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from aio_pika.abc import AbstractChannel

from ingest.blobstore import BlobStore
from ingest.quarantine import Quarantine
from ingest.topology import declare_topology
from normalizer.envelope import PAYLOAD_KINDS
from tests.conftest import bodies, collect
from tests.daemon import DaemonBase, ingest_command
from tests.local import LocalDaemon

WEB_MESSAGE = b'{"sender": {"email": "kept@customer.example"}, "text": "Kept, then replayed."}'


def keep(daemon: DaemonBase, raw: bytes, payload: str, source_id: str | None = None) -> str:
    """Put an entry into the daemon's quarantine as the pipeline would."""
    var = daemon.workdir / "var"
    quarantine = Quarantine(var / "quarantine", BlobStore(var / "blobs"))
    entry = quarantine.keep(
        "01JCKEPT0000000000000000WB",
        raw,
        channel="web",
        adapter="web-api",
        touchpoints=["api"],
        received_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        reason="kept by the test",
        payload=payload,
        source_id=source_id,
    )
    return entry.id


async def test_a_kept_web_message_replays_with_its_source_id(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    entry_id = keep(daemon, WEB_MESSAGE, "web", source_id="form-4711")

    replayed = await ingest_command(daemon.settings_path, "quarantine", "replay", entry_id)

    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {entry_id} as case-open {entry_id}" in replayed.stdout.decode()
    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["channel"] == "web"
    assert case["source_id"] == "form-4711"
    assert case["sender"]["address"] == "kept@customer.example"
    assert (await ingest_command(daemon.settings_path, "quarantine", "list")).stdout == b""


async def test_a_replay_the_broker_cannot_route_fails_and_the_entry_stays(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    daemon = make_daemon()  # not started: nothing declares the queue again meanwhile
    await declare_topology(amqp, daemon.names.queue_settings())
    await amqp.queue_delete(daemon.names.case_open)  # the exchange routes a case-open nowhere
    entry_id = keep(daemon, WEB_MESSAGE, "web", source_id="form-4712")

    replayed = await ingest_command(daemon.settings_path, "quarantine", "replay", entry_id)

    assert replayed.returncode == 1
    assert "routes nothing" in replayed.stderr.decode()
    listed = await ingest_command(daemon.settings_path, "quarantine", "list")
    assert entry_id in listed.stdout.decode(), "still kept, to replay later"


@pytest.mark.slow
async def test_a_payload_that_no_longer_decodes_stays_with_a_reason(daemon: DaemonBase) -> None:
    entry_id = keep(daemon, b'{"sender": {}, "text": ""}', "web")

    replayed = await ingest_command(daemon.settings_path, "quarantine", "replay", entry_id)

    assert replayed.returncode == 1
    assert "does not decode" in replayed.stderr.decode()
    listed = await ingest_command(daemon.settings_path, "quarantine", "list")
    assert entry_id in listed.stdout.decode()


async def test_an_unknown_payload_kind_is_named(daemon: DaemonBase) -> None:
    assert "carrier-pigeon" not in PAYLOAD_KINDS
    entry_id = keep(daemon, b"coo", "carrier-pigeon")

    replayed = await ingest_command(daemon.settings_path, "quarantine", "replay", entry_id)

    assert replayed.returncode == 1
    assert "cannot read 'carrier-pigeon' payloads" in replayed.stderr.decode()
