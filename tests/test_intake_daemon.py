"""Knowledge base and incidents through the running daemon: forwarded cases carry
`kb.suggestions` and `incident`, rules route on them, incident notices reach the `incidents`
queue, the contact form offers articles first and counts what happened, and the tools read
it all back."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.contact import CONTACT_SETTINGS, FIELDS, open_form, reference_of, send, token_of
from tests.daemon import BROKER_URL, Names, ingest_command
from tests.local import LocalDaemon
from tests.mail_relay import MailRelay
from tests.test_web_api import MESSAGE, submit
from tests.waiting import until

EXAMPLE_KB = Path(__file__).resolve().parent.parent / "kb"
INTAKE = f"""
[kb]
path = "{EXAMPLE_KB}"

[incidents]
min_customers = 5
window_min = 30

[triage]
[[triage.priorities]]
name = "P1"
definition = "Urgent"
response = "30m"

[[triage.priorities]]
name = "P3"
definition = "Normal"
response = "8h"

[triage.templates.answered]
text = {{ en = "Hello {{name}}, these may help:\\n{{articles}}\\nReference {{reference}}." }}

[[triage.rules]]
name = "known-answer"
when = {{ kb = {{ score_at_least = 0.6, audience = "public", tag = ["billing", "refund"] }} }}
set = {{ bucket = "reference", tags = ["kb-answer"] }}
acknowledge = "answered"

[[triage.rules]]
name = "outage"
when = {{ incident = {{ size_at_least = 5 }} }}
set = {{ priority = "P1", queue = "{{outages}}", tags = ["incident"] }}
"""
STORM = [
    "Our internet is down in Aarhus, the FiberBox shows E-1043.",
    "No internet since nine in Aarhus, FiberBox light red, error E-1043.",
    "FiberBox says E-1043 and there is no internet here in Aarhus.",
    "Is there an outage in Aarhus? FiberBox E-1043, no internet at all.",
    "Internet stopped working in Aarhus, FiberBox error E-1043.",
    "Aarhus: no internet, the FiberBox shows error E-1043 again.",
]


@pytest.fixture
async def outages(names: Names) -> AsyncIterator[str]:
    queue = f"{names.prefix}.outages"
    yield queue
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        await (await connection.channel()).queue_delete(queue)


async def start(
    make: Callable[..., LocalDaemon], names: Names, outages: str, extra: str = ""
) -> LocalDaemon:
    daemon = make(extra=INTAKE.replace("{outages}", outages) + CONTACT_SETTINGS + extra)
    teams = json.dumps([names.default, outages])
    return await daemon.launch(env={"INGEST_QUEUES__TEAMS": teams})


async def test_cases_carry_kb_suggestions_and_rules_route_on_them(
    make_daemon: Callable[..., LocalDaemon],
    names: Names,
    outages: str,
    amqp: AbstractChannel,
    relay: MailRelay,
) -> None:
    outbound = (
        f'\n[outbound.mail]\nenabled = true\nhost = "127.0.0.1"\nport = {relay.port}\n'
        'security = "none"\nfrom_address = "support@example.com"\n'
    )
    daemon = await start(make_daemon, names, outages, outbound)
    refund = MESSAGE | {"subject": "Charged twice", "text": "I was charged twice, refund please"}
    assert (await submit(daemon, refund)).status_code == 202
    nothing = MESSAGE | {"subject": "Hello", "sender": {"email": "zed@example.com"}, "text": "xq"}
    assert (await submit(daemon, nothing)).status_code == 202
    first, second = bodies(await collect(amqp, names.default, 2))
    best = first["kb"]["suggestions"][0]
    assert (best["id"], best["audience"], best["language"]) == ("refunds", "public", "en")
    assert best["url"] == "https://help.example.com/articles/refunds"
    assert best["score"] >= 0.6 and {"charged", "twice"} <= set(best["matched"])
    assert len(first["kb"]["suggestions"]) <= 3
    triage = first["triage"]
    assert (triage["bucket"], triage["tags"], triage["acknowledge"]) == (
        "reference",
        ["kb-answer"],
        "answered",
    )
    assert triage["matched"][0]["because"].startswith("kb article refunds (")
    await until(lambda: relay.received)
    [mail] = relay.received
    assert "How refunds work: https://help.example.com/articles/refunds" in str(mail.message)
    assert second["kb"] == {"suggestions": []}
    assert second["triage"]["bucket"] is None and second["triage"]["tags"] == []


async def test_a_storm_forms_an_incident_rules_raise_and_the_coordinator_hears(
    make_daemon: Callable[..., LocalDaemon], names: Names, outages: str, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, names, outages)
    for n, text in enumerate(STORM):
        sent = MESSAGE | {"sender": {"email": f"s{n}@people.example"}, "subject": "No internet"}
        assert (await submit(daemon, sent | {"text": text})).status_code == 202
        await daemon.settled(n + 1)  # one batch a message: the fifth forms it
    plain = bodies(await collect(amqp, names.default, 4))
    assert all(case["incident"] is None for case in plain)
    raised = bodies(await collect(amqp, outages, 2))
    assert [case["incident"]["size"] for case in raised] == [5, 6]
    assert raised[0]["incident"]["id"] == "I-1" and raised[0]["incident"]["customers"] == 5
    assert (raised[0]["triage"]["priority"], raised[0]["triage"]["tags"]) == ("P1", ["incident"])
    formed, grew = [json.loads(m.body) for m in await collect(amqp, names.incidents, 2)]
    assert (formed["event"], formed["incident"]["size"]) == ("formed", 5)
    assert (grew["event"], grew["incident"]["size"]) == ("grew", 6)

    listed = await ingest_command(daemon.settings_path, "incidents", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.decode().splitlines()
    assert re.match(r"I-1\s+formed\s+6 messages\s+6 customers", line), line
    shown = await ingest_command(daemon.settings_path, "incidents", "show", "I-1")
    text = shown.stdout.decode()
    assert shown.returncode == 0 and "customers:   6" in text and "No internet" in text
    assert len([row for row in text.splitlines() if row.startswith("    01")]) == 6
    missing = await ingest_command(daemon.settings_path, "incidents", "show", "I-9")
    assert missing.returncode == 1 and "no incident I-9" in missing.stderr.decode()
    bad = await ingest_command(daemon.settings_path, "incidents", "show", "x")
    assert bad.returncode == 1 and "not an incident id" in bad.stderr.decode()


async def test_the_contact_form_offers_articles_first_and_counts_what_happened(
    make_daemon: Callable[..., LocalDaemon], names: Names, outages: str, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, names, outages)
    question = FIELDS | {"subject": "Refund", "message": "I was charged twice, refund please."}
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        token = await open_form(client)
        offered = await send(client, token, question)
        assert offered.status_code == 200, offered.text
        assert "Does one of these answer your question?" in offered.text
        assert "How refunds work" in offered.text and "Runbook" not in offered.text
        # "No, send my message": the same fields again, sent as before.
        hidden = dict(
            re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                offered.text.split("No, send my message")[0].rsplit("<form", 1)[1],
            )
        )
        assert hidden["step"] == "send" and hidden["subject"] == "Refund"
        sent = await send(client, hidden.pop("csrf_token"), hidden)
        assert sent.status_code == 200 and "Thank you" in sent.text
        [case] = bodies(await collect(amqp, names.default, 1))
        assert case["id"] == reference_of(sent.text)
        # Another customer: "Yes, that solved it" opens nothing.
        token = await open_form(client)
        offered = await send(client, token, question | {"email": "bo@example.com"})
        solved = await send(
            client,
            token_of(offered.text),
            {},
            step="solved",
            article="refunds",
            answer="Found it, thanks!\nsecond line dropped",
        )
        assert solved.status_code == 200 and "Glad that helped" in solved.text
        unknown = await send(client, token_of(offered.text), {}, step="solved", article="nope")
        assert unknown.status_code == 422
    await daemon.settled(3, "kb-events")  # two showings, one deflection
    await daemon.settled(1)
    assert await collect(amqp, names.default, 0) == []  # the deflected contact opened nothing
    stats = await ingest_command(daemon.settings_path, "kb", "stats")
    lines = stats.stdout.decode().splitlines()
    refunds = next(line.split() for line in lines if line.startswith("refunds "))
    assert refunds == ["refunds", "1", "2", "1"]  # suggested with the sent case, shown, accepted
    assert any(line.strip().endswith('refunds: "Found it, thanks!"') for line in lines)


async def test_a_bad_kb_event_is_dead_lettered_with_the_reason(
    make_daemon: Callable[..., LocalDaemon], names: Names, outages: str, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, names, outages)
    body = json.dumps({"schema": "kb-event/1", "event": "liked", "articles": []}).encode()
    await amqp.default_exchange.publish(aio_pika.Message(body), routing_key=names.kb_events)
    [dead] = await collect(amqp, names.kb_events_dead, 1)
    reason = str(dead.headers["x-ingest-reason"])
    assert reason.startswith("not a valid kb-event/1 message: ") and "event" in reason
    assert await daemon.consumed("kb-events", "dead-lettered") == 1


async def test_a_new_article_is_found_without_a_restart(
    make_daemon: Callable[..., LocalDaemon], names: Names, tmp_path: Path, amqp: AbstractChannel
) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.md").write_text("---\nid: a\ntitle: Printer\nlanguage: en\nurl: /a\n---\nPrint.\n")
    daemon = await make_daemon(extra=f'[kb]\npath = "{folder}"\n').launch()
    (folder / "b.md").write_text("---\nid: b\ntitle: Kettle\nlanguage: en\nurl: /b\n---\nBoil.\n")
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        for _ in range(200):
            health = (await client.get("/healthz")).json()
            if health["kb"]["articles"] == 2:
                break
            await asyncio.sleep(0.1)
    assert health["kb"]["articles"] == 2 and health["kb"]["status"] == "ok"
    assert (await submit(daemon, MESSAGE | {"text": "my kettle will not boil"})).status_code == 202
    [case] = bodies(await collect(amqp, names.default, 1))
    assert case["kb"]["suggestions"][0]["id"] == "b"


async def test_a_message_no_article_answers_is_sent_at_once(
    make_daemon: Callable[..., LocalDaemon], names: Names, outages: str, amqp: AbstractChannel
) -> None:
    daemon = await start(make_daemon, names, outages)
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        token = await open_form(client)
        sent = await send(client, token, FIELDS | {"subject": "Hm", "message": "Qwerty zxcv."})
    assert sent.status_code == 200 and "Thank you" in sent.text
    [case] = bodies(await collect(amqp, names.default, 1))
    assert case["id"] == reference_of(sent.text)
    assert await daemon.consumed("kb-events") == 0
