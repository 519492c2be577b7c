"""Triage inside the running daemon: cases land in the team queue the rules chose, carrying
the rules that matched and why; reloading rules under load never mixes two rule sets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import (
    BROKER_URL,
    AnyDaemon,
    Daemon,
    DaemonBase,
    Names,
    ingest_command,
    run_ingest,
)
from tests.local import LocalDaemon
from tests.test_web_api import MESSAGE, submit

TRIAGE = """
[triage]
include = ["rules.d/*.toml"]
default_priority = "P3"

[[triage.priorities]]
name = "P2"
definition = "Major"
response = "2h"
resolution = "16h"

[[triage.priorities]]
name = "P3"
definition = "Normal"
response = "8h"
resolution = "40h"

[[triage.sla]]
name = "standard"
calendar = "always"

[[triage.rules]]
name = "billing"
when = {{ keywords = ["refund", "退款"] }}
set = {{ queue = "{billing}", bucket = "action", priority = "P2", sla = "standard" }}

[[triage.rules]]
name = "order-number"
when = {{ text_regex = '(?P<order>[0-9]{{6}})', field = {{ name = "plan", glob = "gold" }} }}
set = {{ tags = ["order"] }}
"""
SET = (
    '[[rules]]\nname = "{name}1"\nset = {{ tags = ["{name}"] }}\n\n'
    '[[rules]]\nname = "{name}2"\nset = {{ tags = ["{name}-too"] }}\n'
)
PLAIN = MESSAGE | {"subject": "A plain question"}


def one_of_many(n: int) -> dict[str, object]:
    """A message from its own customer, so that none is a follow-up of another."""
    return PLAIN | {"sender": {"email": f"customer{n}@load.example"}, "text": f"load {n}"}


@pytest.fixture
async def billing(names: Names) -> AsyncIterator[str]:
    queue = f"{names.prefix}.billing"
    yield queue
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        await (await connection.channel()).queue_delete(queue)


async def start(make: Callable[..., AnyDaemon], names: Names, billing: str) -> AnyDaemon:
    teams = json.dumps([names.default, billing])
    daemon = make(extra=TRIAGE.format(billing=billing))
    return await daemon.launch(env={"INGEST_QUEUES__TEAMS": teams})


async def test_cases_go_where_the_rules_say_and_say_why(
    make_daemon: Callable[..., LocalDaemon],
    names: Names,
    billing: str,
    amqp: AbstractChannel,
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.d").mkdir()
    daemon = await start(make_daemon, names, billing)

    refund = MESSAGE | {"subject": "退款", "text": "请给我退款 123456", "fields": {"plan": "gold"}}
    assert (await submit(daemon, refund)).status_code == 202
    assert (await submit(daemon, PLAIN | {"text": "Where is my parcel?"})).status_code == 202

    [routed] = bodies(await collect(amqp, billing, 1))
    triage = routed["triage"]
    assert (triage["queue"], triage["bucket"], triage["priority"]) == (billing, "action", "P2")
    assert triage["matched"][0] == {"rule": "billing", "because": 'keyword "退款" in subject'}
    assert [hit["rule"] for hit in triage["matched"]] == ["billing", "order-number"]
    assert (triage["fields"], triage["tags"]) == ({"order": "123456"}, ["order"])
    assert routed["fields"] == {"plan": "gold"}
    assert triage["sla"]["policy"] == "standard"
    assert routed["customer"] is not None and routed["dedup"]["verdict"] == "new"
    [plain] = bodies(await collect(amqp, names.default, 1))
    assert plain["triage"]["matched"] == []
    assert plain["triage"]["priority"] == "P3"


@pytest.mark.slow
async def test_reloading_under_load_never_routes_by_a_partial_rule_set(
    make_process: Callable[..., Daemon],
    names: Names,
    billing: str,
    amqp: AbstractChannel,
    tmp_path: Path,
) -> None:
    included = tmp_path / "rules.d"
    included.mkdir()
    rules_file = included / "50-tags.toml"
    rules_file.write_text(SET.format(name="a"))
    daemon = await start(make_process, names, billing)
    total = 300

    async def flip() -> None:
        for turn in range(1000):
            text = SET.format(name="b" if turn % 2 else "a")
            if turn % 5 == 4:
                text = '[[rules]]\nname = "broken"\nset = { queue = "nowhere" }\n'
            # As a careful admin saves: whole, then renamed into place.
            draft = rules_file.with_suffix(".draft")
            draft.write_text(text)
            os.replace(draft, rules_file)
            await asyncio.sleep(0.15)
            daemon.signal(signal.SIGHUP)

    flipper = asyncio.create_task(flip())
    try:
        for start_at in range(0, total, 20):
            batch = range(start_at, start_at + 20)
            answers = await asyncio.gather(*(submit(daemon, one_of_many(n)) for n in batch))
            assert {answer.status_code for answer in answers} == {202}
            await asyncio.sleep(0.05)
    finally:
        flipper.cancel()

    cases = bodies(await collect(amqp, names.default, total, timeout_s=60))
    assert len(cases) == total  # none lost
    seen = {tuple(case["triage"]["rules"]) for case in cases}
    assert seen <= {("a1", "a2"), ("b1", "b2")}, seen
    assert len(seen) == 2  # both rule sets were in force at some point
    log = daemon.log_text()
    assert "rules reload refused, the rules in force stay" in log


async def test_rules_replay_shows_what_proposed_rules_would_change(
    make_process: Callable[..., Daemon],
    names: Names,
    billing: str,
    amqp: AbstractChannel,
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.d").mkdir()
    daemon = await start(make_process, names, billing)
    refund = PLAIN | {"sender": {"email": "ann@customer.example"}, "text": "A refund, please"}
    parcel = PLAIN | {"sender": {"email": "bo@customer.example"}, "text": "My parcel is late"}
    for message in (refund, parcel):
        assert (await submit(daemon, message)).status_code == 202
    assert len(await collect(amqp, billing, 1)) == 1
    assert len(await collect(amqp, names.default, 1)) == 1
    assert daemon.stop() == 0

    proposed = tmp_path / "proposed.toml"
    proposed.write_text(
        "[triage]\n"
        '[[triage.rules]]\nname = "late-parcels"\n'
        'when = { keywords = ["parcel"] }\n'
        f'set = {{ queue = "{billing}", tags = ["parcel"] }}\n'
    )
    teams = {"INGEST_QUEUES__TEAMS": json.dumps([names.default, billing])}
    replayed = run_ingest(
        daemon.settings_path,
        "rules",
        "replay",
        "--rules",
        str(proposed),
        "--since",
        "1d",
        env=teams,
    )

    assert replayed.returncode == 0, replayed.stderr
    out = replayed.stdout.decode()
    assert "2 messages since" in out and "2 would be treated differently" in out
    assert f"1 from queue {billing} to {names.default}" in out
    assert f"1 from queue {names.default} to {billing}" in out
    assert f"queue {names.default} -> {billing} (by late-parcels)" in out
    assert f"queue {billing} -> {names.default} (by the defaults)" in out


@pytest.mark.slow
async def test_rules_replay_refuses_a_bad_window_and_bad_rules(
    daemon: DaemonBase, tmp_path: Path
) -> None:
    proposed = tmp_path / "proposed.toml"
    proposed.write_text('[triage]\n[[triage.rules]]\nname = "x"\nset = { queue = "nowhere" }\n')
    bad_rules = await ingest_command(
        daemon.settings_path, "rules", "replay", "--rules", str(proposed)
    )
    assert bad_rules.returncode == 1
    assert "unknown queue 'nowhere'" in bad_rules.stderr.decode()
    proposed.write_text("[triage]\n")
    bad_window = await ingest_command(
        daemon.settings_path, "rules", "replay", "--rules", str(proposed), "--since", "soon"
    )
    assert bad_window.returncode == 1
    assert "--since takes a count and a unit" in bad_window.stderr.decode()
