"""The JSON API end to end: HTTP in, the forwarded case out of the team queue, on RabbitMQ."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import API_KEY, DaemonBase

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MESSAGE = {
    "sender": {"email": "Ann.Lee@Example.com", "phone": "+44 20 7946 0958", "name": "Ann Lee"},
    "subject": "Refund for order 1234",
    "text": "Hello,\r\nI was charged twice for order 1234.\r\nAnn",
    "language": "en",
}


async def submit(daemon: DaemonBase, json: object = MESSAGE, **headers: str) -> httpx.Response:
    async with daemon.client() as client:
        return await client.post("/api/v1/messages", json=json, headers=AUTH | headers)


async def test_a_message_arrives_in_the_default_queue_with_every_field(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    response = await submit(daemon, **{"Idempotency-Key": "order-1234-refund"})
    assert response.status_code == 202, response.text
    accepted = response.json()

    [message] = await collect(amqp, daemon.names.default, expected=1)
    case = message.body and bodies([message])[0]
    assert message.message_id == accepted["id"] == case["id"]
    assert message.content_type == "application/json"
    assert message.headers["x-schema"] == "case-open/1"
    assert case["schema"] == "case-open/1"
    assert (case["channel"], case["adapter"], case["source_id"]) == (
        "web",
        "web-api",
        "order-1234-refund",
    )
    assert case["touchpoints"] == [{"kind": "api", "address": "api"}]
    assert case["sender"] == {
        "kind": "email",
        "address": "ann.lee@example.com",
        "name": "Ann Lee",
        "alternates": [{"kind": "phone", "address": "+442079460958"}],
    }
    assert case["subject"] == "Refund for order 1234"
    assert case["text"] == "Hello,\nI was charged twice for order 1234.\nAnn"
    assert case["language"] == "en"
    assert case["received_at"].endswith("Z")
    assert case["dedup"]["verdict"] == "new"
    assert case["triage"]["queue"] == daemon.names.default


async def test_the_same_idempotency_key_three_times_forwards_one_message(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    answers = [await submit(daemon, **{"Idempotency-Key": "retry-me"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    by_external_id = await submit(daemon, {**MESSAGE, "external_id": "retry-me"})
    assert by_external_id.status_code == 202
    # Every repeat is answered as the first: the id of the case-open that counts.
    ids = {answer.json()["id"] for answer in [*answers, by_external_id]}
    assert len(ids) == 1
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]

    await daemon.settled(4)
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert [case["source_id"] for case in forwarded] == ["retry-me"]
    assert forwarded[0]["id"] == answers[0].json()["id"]


async def test_without_a_key_every_submission_is_its_own_message(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    ids = [(await submit(daemon)).json()["id"] for _ in range(2)]
    [first] = bodies(await collect(amqp, daemon.names.default, expected=1))
    # Its own message, but the same customer saying the same thing: a duplicate (level 2).
    [second] = bodies(await collect(amqp, daemon.names.case_update, expected=1))
    assert [first["id"], second["id"]] == ids
    assert [first["source_id"], second["source_id"]] == ids
    assert second["dedup"]["verdict"] == "duplicate"
    assert second["dedup"]["case_id"] == first["dedup"]["case_id"]


async def test_bad_requests_get_problem_details_and_the_daemon_keeps_serving(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with daemon.client() as client:
        missing_key = await client.post("/api/v1/messages", json=MESSAGE)
        wrong_key = await client.post(
            "/api/v1/messages", json=MESSAGE, headers={"Authorization": "Bearer nope"}
        )
        too_large = await client.post(
            "/api/v1/messages", json={**MESSAGE, "text": "x" * 5000}, headers=AUTH
        )
        not_json = await client.post(
            "/api/v1/messages",
            content=b"sender=me&text=hi",
            headers=AUTH | {"Content-Type": "application/x-www-form-urlencoded"},
        )
        broken_json = await client.post(
            "/api/v1/messages",
            content=b'{"sender": ',
            headers=AUTH | {"Content-Type": "application/json"},
        )
        invalid = await client.post(
            "/api/v1/messages",
            json={"sender": {"email": "ann@example.com", "phone": "12"}, "text": "hi"},
            headers=AUTH,
        )
        conflicting = await client.post(
            "/api/v1/messages",
            json={**MESSAGE, "external_id": "a"},
            headers=AUTH | {"Idempotency-Key": "b"},
        )

    for response, status in [
        (missing_key, 401),
        (wrong_key, 401),
        (too_large, 413),
        (not_json, 415),
        (broken_json, 422),
        (invalid, 422),
        (conflicting, 422),
    ]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == status
    assert missing_key.headers["www-authenticate"].startswith("Bearer")
    assert too_large.json()["limit"] == 4096
    assert invalid.json()["errors"] == [
        {
            "field": "sender.phone",
            "message": "Value error, write the number with + and its country code",
        }
    ]
    assert conflicting.json()["errors"][0]["field"] == "external_id"

    good = await submit(daemon)
    assert good.status_code == 202
    forwarded = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert [case["id"] for case in forwarded] == [good.json()["id"]]
    assert daemon.alive()


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    daemon: DaemonBase,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(
        b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {API_KEY}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")


async def test_openapi_document_describes_the_api(daemon: DaemonBase) -> None:
    async with daemon.client() as client:
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/api/v1/messages"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/Submission"}
    schemas = document["components"]["schemas"]
    web, logged = schemas["Submission"]["anyOf"]
    assert set(web["properties"]) >= {"sender", "subject", "text", "external_id"}
    assert web["properties"]["sender"]["$ref"] == "#/components/schemas/WebSender"
    assert sorted(logged["required"]) == ["agent_id", "channel", "sender", "text", "via"]
    assert "WebSender" in schemas
    assert {"202", "401", "403", "413", "415", "422", "429", "503"} <= set(operation["responses"])
    assert set(operation["responses"]["429"]["headers"]) >= {"Retry-After", "RateLimit-Limit"}
    assert operation["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "/readyz" in document["paths"]


async def test_health_and_readiness(daemon: DaemonBase) -> None:
    async with daemon.client() as client:
        health = (await client.get("/healthz")).json()
        assert health["status"] == "alive"
        assert (health["rules"]["status"], health["rules"]["rules"]) == ("ok", 0)
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": "ok", "store": "ok", "spool": "ok"}


LOGGED_BY_HAND = {"channel": "logged", "via": "letter", "agent_id": "agent-3"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subject": "Refund\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "nul\u0000byte"}, "subject"),
        ({"sender": {"email": "ann@example.com", "name": "Ann\nLee"}}, "sender.name"),
        ({"sender": {"email": "ann@example.com", "name": "Ann\u2028Lee"}}, "sender.name"),
        ({"external_id": "id\u0085x"}, "external_id"),
        ({**LOGGED_BY_HAND, "agent_id": "agent\t3"}, "agent_id"),
        ({"fields": {"order": "1234\r\nX: y"}}, "fields.order"),
        ({"controls": {"tags": ["vip\u0000"]}}, "controls.tags.0"),
        ({**LOGGED_BY_HAND, "occurred_at": "2020-01-01T10:00:00+01:00"}, "occurred_at"),
        ({**LOGGED_BY_HAND, "occurred_at": "2999-01-01T10:00:00Z"}, "occurred_at"),
    ],
)
async def test_one_line_fields_and_times_out_of_range_are_refused_by_name(
    daemon: DaemonBase, change: dict[str, object], field: str
) -> None:
    refused = await submit(daemon, {**MESSAGE, **change})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["field"] == field
    assert "control character" in error["message"] or "lies" in error["message"]


async def test_text_keeps_its_line_breaks_and_loses_nul(
    daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    text = "Line one\u0000\r\nLine two\n\nLine four"
    accepted = await submit(daemon, {**MESSAGE, "text": text, "subject": "Ünïcode ok ✓"})
    assert accepted.status_code == 202, accepted.text
    [case] = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert case["text"] == "Line one\nLine two\n\nLine four"
    assert case["subject"] == "Ünïcode ok ✓"
