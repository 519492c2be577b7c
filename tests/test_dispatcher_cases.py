"""The dispatcher daemon on the real broker: updates, case events, poison and transient errors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aio_pika
from aio_pika.abc import AbstractChannel

from normalizer.model import Thread
from tests.conftest import bodies, collect
from tests.daemon import Names, ingest_command
from tests.local import LocalDaemon
from tests.test_decide import DIRECTORY, message
from tests.test_dispatcher import publish
from tests.test_spool import wait_not_ready

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


async def send_event(amqp: AbstractChannel, names: Names, body: dict | bytes) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    await amqp.default_exchange.publish(aio_pika.Message(raw), routing_key=names.case_events)


async def test_new_cases_go_to_the_team_and_updates_to_case_update_with_history(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    daemon = make_daemon()
    (daemon.workdir / "directory.csv").write_text(DIRECTORY)
    imported = await ingest_command(
        daemon.settings_path, "customers", "import", str(daemon.workdir / "directory.csv")
    )
    assert imported.returncode == 0, imported.stderr
    daemon.start(role="dispatcher")
    await daemon.wait_ready()

    mail = message(text="Invoice 77 is wrong", at=T0)
    await publish(names, [mail.to_json()])
    [opened] = bodies(await collect(amqp, names.default, 1))
    assert opened["customer"]["external_id"] == "ACME-1"
    assert opened["dedup"]["verdict"] == "new"
    ref = opened["dedup"]["case_id"]

    sms = message("+4930123456", "invoice 77 is wrong", channel="sms", at=T0 + timedelta(minutes=5))
    await publish(names, [sms.to_json()])
    [update] = await collect(amqp, names.case_update, 1)
    assert update.headers["x-dedup"] == "duplicate"
    assert update.headers["x-case"] == ref
    duplicate = json.loads(update.body)
    assert duplicate["dedup"]["level"] == 2
    assert duplicate["history"]["open_cases"][0]["id"] == ref
    assert duplicate["history"]["contacts"][0] == {
        "days": 7,
        "total": 1,
        "by_channel": {"email": 1},
    }
    assert duplicate["triage"]["queue"] == names.case_update


async def test_case_events_close_a_case_and_a_reply_reopens_it(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    daemon = make_daemon().start(role="dispatcher")
    await daemon.wait_ready()
    await publish(names, [message(at=T0).to_json()])
    [opened] = bodies(await collect(amqp, names.default, 1))
    ref = opened["dedup"]["case_id"]

    closed = {"id": "hd-1", "case": ref, "event": "closed", "at": T0.isoformat(), "note": "fixed"}
    await send_event(amqp, names, closed)
    await send_event(amqp, names, b'{"id": "hd-2", "case": "C-1"}')
    await send_event(amqp, names, closed | {"id": "hd-3", "case": "C-404"})
    dead = await collect(amqp, names.case_events_dead, 2)
    reasons = [str(m.headers["x-ingest-reason"]) for m in dead]
    assert reasons[0].startswith("not a valid case event: event: Field required")
    assert reasons[1] == "no case C-404"

    reply = message(text="Not fixed", at=T0 + timedelta(hours=2), thread=Thread(case_ref=ref))
    await publish(names, [reply.to_json()])
    [update] = bodies(await collect(amqp, names.case_update, 1))
    assert update["dedup"]["verdict"] == "follow-up"
    assert update["dedup"]["reopened"] is True
    assert "it was closed: reopened" in update["dedup"]["reason"]


async def test_a_poison_message_is_dead_lettered_after_retries_and_the_rest_goes_on(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel, pg_url: str
) -> None:
    good = message(text="fine")
    poison = message("x" * 400 + "@example.com", "too long an address for the store")
    await publish(names, [good.to_json(), poison.to_json()])
    daemon = make_daemon(store_url=pg_url, extra="[dispatcher]\nbatch_wait_ms = 300\n")
    daemon.start(role="dispatcher")
    await daemon.wait_ready()

    [forwarded] = bodies(await collect(amqp, names.default, 1))
    assert forwarded["id"] == good.id
    [dead] = await collect(amqp, names.case_open_dead, 1)
    assert json.loads(dead.body)["id"] == poison.id
    reason = str(dead.headers["x-ingest-reason"])
    assert reason.startswith("failed 3 times in the dispatcher: DataError: ")
    assert "value too long" in reason
    await daemon.settled(2)
    poisoned = await daemon.counted(
        "ingest_dead_letters_total", queue="case-open", reason="failed 3 times in the dispatcher"
    )
    assert poisoned == 1


async def test_a_locked_store_is_waited_for_never_acked_or_dead_lettered(
    make_daemon: Callable[..., LocalDaemon], names: Names, amqp: AbstractChannel
) -> None:
    daemon = make_daemon().start(role="dispatcher", env={"INGEST_STORE__LOCK_TIMEOUT_S": "0.3"})
    await daemon.wait_ready()
    database = sqlite3.connect(daemon.workdir / "ingest.db", isolation_level=None)
    database.execute("BEGIN EXCLUSIVE")  # another writer holds the store for a while
    try:
        waiting = message(text="patience")
        await publish(names, [waiting.to_json()])
        # Past the lock timeout: a transient error, retried; /readyz names it meanwhile.
        not_ready = await wait_not_ready(daemon)
        assert "database is locked" in str(not_ready["checks"]), not_ready
        assert await collect(amqp, names.default, 0, timeout_s=0) == []
    finally:
        database.execute("ROLLBACK")
        database.close()

    [forwarded] = bodies(await collect(amqp, names.default, 1))
    assert forwarded["id"] == waiting.id
    await daemon.settled(1)
    assert await daemon.consumed("case-open", "dead-lettered") == 0
    assert await collect(amqp, names.case_open_dead, 0) == []
