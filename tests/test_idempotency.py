"""Idempotency-Key as payment APIs keep it: the same key and body get the same answer (status
and case-open id) across restarts and channels processes; another body is refused by name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from dispatcher.access.idempotency import claim
from dispatcher.store import Store
from tests.daemon import API_KEY, DaemonBase
from tests.local import LocalDaemon
from tests.proxy import TcpProxy

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MESSAGE = {"sender": {"email": "ann@example.com"}, "text": "Refund for order 1234, please."}


async def submit(daemon: DaemonBase, key: str, body: object = MESSAGE) -> httpx.Response:
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        return await client.post(
            "/api/v1/messages", json=body, headers=AUTH | {"Idempotency-Key": key}
        )


async def test_the_same_key_with_another_body_is_refused_naming_the_conflict(
    daemon: LocalDaemon,
) -> None:
    first = await submit(daemon, "order-1234")
    assert first.status_code == 202
    other = await submit(daemon, "order-1234", {**MESSAGE, "text": "Something else"})
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert problem["errors"] == [
        {"field": "Idempotency-Key", "message": "reused with a different body"}
    ]
    assert problem["conflict"]["key"] == "order-1234"
    assert "'order-1234' was used at " in problem["detail"]
    # The first answer still stands, and key order or spacing in the JSON changes nothing.
    again = await submit(daemon, "order-1234", dict(reversed(MESSAGE.items())))
    assert (again.status_code, again.json()["id"]) == (202, first.json()["id"])


async def test_concurrent_repeats_all_get_the_first_id(daemon: LocalDaemon) -> None:
    answers = await asyncio.gather(*(submit(daemon, "burst-key") for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7


async def test_the_answer_holds_across_channels_processes_and_restarts(
    make_daemon: Callable[..., LocalDaemon], pg_url: str
) -> None:
    first = await make_daemon(store_url=pg_url, settings_name="a.toml").launch("channels")
    second = make_daemon(store_url=pg_url, settings_name="b.toml")
    await second.launch("channels", {"INGEST_PATHS__DATA_DIR": str(second.workdir / "var-b")})

    answer = await submit(first, "invoice-77")
    assert answer.status_code == 202
    case_id = answer.json()["id"]
    elsewhere = await submit(second, "invoice-77")
    assert (elsewhere.status_code, elsewhere.json()["id"]) == (202, case_id)
    assert elsewhere.headers["Idempotent-Replayed"] == "true"
    conflict = await submit(second, "invoice-77", {**MESSAGE, "subject": "changed"})
    assert conflict.status_code == 422

    await first.close()
    restarted = await make_daemon(store_url=pg_url, settings_name="a.toml").launch("channels")
    after = await submit(restarted, "invoice-77")
    assert (after.status_code, after.json()["id"]) == (202, case_id)


async def test_a_record_expires_and_its_key_can_be_used_anew(store_url: str) -> None:
    store = await Store.open(store_url, auto_migrate=True)
    day = timedelta(hours=24)
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    try:
        made = await store.run(claim, "k", "digest-1", "01CASE0000000000000000000A", t0, day)
        repeat = await store.run(claim, "k", "digest-2", "01CASE0000000000000000000B", t0, day)
        later = t0 + day + timedelta(seconds=1)
        anew = await store.run(claim, "k", "digest-2", "01CASE0000000000000000000C", later, day)
    finally:
        await store.close()
    assert (made.first, made.case_id, made.status) == (True, "01CASE0000000000000000000A", 202)
    assert (repeat.first, repeat.case_id, repeat.digest) == (
        False,
        "01CASE0000000000000000000A",
        "digest-1",
    )
    assert (anew.first, anew.case_id, anew.digest) == (
        True,
        "01CASE0000000000000000000C",
        "digest-2",
    )


async def test_without_the_store_a_keyed_request_is_503_and_the_rest_goes_on(
    make_daemon: Callable[..., LocalDaemon], pg_url: str
) -> None:
    link = TcpProxy(target_port=5432)
    await link.start()
    try:
        through_link = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{link.port}")
        daemon = await make_daemon(store_url=through_link).launch("channels")
        assert (await submit(daemon, "before-the-cut")).status_code == 202

        await link.cut()
        cut_off = await submit(daemon, "during-the-cut")
        assert cut_off.status_code == 503
        assert cut_off.headers["content-type"] == "application/problem+json"
        assert int(cut_off.headers["Retry-After"]) > 0
        assert "idempotency record" in cut_off.json()["detail"]
        # Without a key nothing needs the store: keys are in memory, counts wait for it.
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            keyless = await client.post("/api/v1/messages", json=MESSAGE, headers=AUTH)
        assert keyless.status_code == 202

        await link.start()
        retried = await submit(daemon, "during-the-cut")
        assert retried.status_code == 202
        assert daemon.alive()
    finally:
        await link.cut()


async def test_a_key_that_is_not_visible_ascii_is_refused_by_name(daemon: LocalDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        answers = [
            await client.post(
                "/api/v1/messages", json=MESSAGE, headers=AUTH | {"Idempotency-Key": key}
            )
            for key in ("caf\xe9".encode("latin-1"), b"", b"x" * 201)
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "Idempotency-Key"
