"""The scenario suite: 5,000 messages with repeats, cross-channel duplicates and follow-ups.

One dispatcher on SQLite, and three dispatcher processes on one PostgreSQL database with one
of them killed (SIGKILL) and restarted midway, must give exactly the same counts: 3,000 new
cases, 1,000 updates each threaded to the right case, 1,000 repeats dropped, nothing left
behind or dead-lettered, nothing forwarded twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel
from sqlalchemy import func, select

from dispatcher.store import Store
from dispatcher.tables import Case, Customer, Message
from tests.conftest import bodies, collect, forwarded_at_least
from tests.daemon import Daemon, Names, run_ingest
from tests.scenario import CUSTOMERS, Scenario, build, is_unknown
from tests.test_dispatcher import message_count, publish_routed
from tests.test_partitions import split

pytestmark = pytest.mark.slow

TOTAL = 5000
KILL_AFTER = 1200
COLLECT_TIMEOUT_S = 900.0


async def test_one_dispatcher_on_sqlite(
    make_process: Callable[..., Daemon], names: Names, amqp: AbstractChannel
) -> None:
    scenario = build(TOTAL)
    daemon = make_process()
    await run_scenario(scenario, [daemon], names, amqp, store_url=None)


async def test_three_dispatchers_on_postgresql_one_killed_midway(
    make_process: Callable[..., Daemon], names: Names, amqp: AbstractChannel, pg_url: str
) -> None:
    """case-open split in three partitions, one for each dispatcher, which stand by for the
    others: the one killed has its partition taken over."""
    scenario = build(TOTAL)
    daemons = [make_process(store_url=pg_url, settings_name=f"d{n}.toml") for n in range(3)]
    await run_scenario(scenario, daemons, names, amqp, store_url=pg_url, kill=True, partitions=3)


async def run_scenario(
    scenario: Scenario,
    daemons: list[Daemon],
    names: Names,
    amqp: AbstractChannel,
    store_url: str | None,
    kill: bool = False,
    partitions: int = 1,
) -> None:
    first = daemons[0]
    directory = first.workdir / "directory.csv"
    directory.write_text(scenario.directory)
    imported = run_ingest(first.settings_path, "customers", "import", str(directory))
    assert imported.returncode == 0, imported.stderr
    await publish_routed(names, scenario.phase_one, partitions)
    roles = [split(partitions, n, len(daemons)) if partitions > 1 else {} for n in range(3)]
    for daemon, env in zip(daemons, roles, strict=False):
        daemon.start("dispatcher", env)
    for daemon in daemons:
        await daemon.wait_ready()
    if kill:
        await forwarded_at_least(amqp, names.default, KILL_AFTER)
        first.kill()
        assert await message_count(amqp, names.default) < scenario.expected_new
        first.start("dispatcher", roles[0])
        await first.wait_ready()

    opened = bodies(await collect(amqp, names.default, scenario.expected_new, COLLECT_TIMEOUT_S))
    check_new_cases(scenario, opened)
    case_of = {case["source_id"]: case["dedup"]["case_id"] for case in opened}
    await publish_routed(names, scenario.build_phase_two(case_of), partitions)
    updates = bodies(
        await collect(amqp, names.case_update, scenario.expected_updates, COLLECT_TIMEOUT_S)
    )
    check_updates(scenario, updates, case_of)

    # Stopped, the dispatchers have settled all they took and the broker holds the rest:
    # nothing left to decide, nothing forwarded twice, nothing dead-lettered.
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.log_text()
    split_in = names.partitions(partitions) if partitions > 1 else []
    queues = [*split_in, names.case_open, names.default, names.case_update]
    for queue in [*queues, names.case_open_dead]:
        assert await message_count(amqp, queue) == 0, queue
    counted = await count_rows(store_url or f"sqlite:///{first.workdir}/ingest.db")
    unknown = len({o.sender.address for o in scenario.originals if is_unknown(o)})
    assert counted == (
        scenario.expected_new + scenario.expected_updates,
        scenario.expected_new,
        CUSTOMERS + unknown,
    )
    assert scenario.expected_drops == 1000
    for daemon in daemons:
        assert "message failed" not in daemon.log_text()


def check_new_cases(scenario: Scenario, opened: list[dict[str, Any]]) -> None:
    assert len(opened) == scenario.expected_new == 3000
    assert len({case["id"] for case in opened}) == len(opened), "a case forwarded twice"
    # Whichever copy of a repeated message came first is the one forwarded.
    assert {case["source_id"] for case in opened} == {o.source_id for o in scenario.originals}
    assert Counter(case["dedup"]["verdict"] for case in opened) == {"new": 3000}
    assert len({case["dedup"]["case_id"] for case in opened}) == 3000, "a case opened twice"
    for case in opened:
        assert case["customer"]["known"] is not case["sender"]["address"].endswith(
            "@unknown.example"
        )


def check_updates(
    scenario: Scenario, updates: list[dict[str, Any]], case_of: dict[str, str]
) -> None:
    assert len(updates) == scenario.expected_updates == 1000
    assert len({update["id"] for update in updates}) == len(updates), "an update forwarded twice"
    verdicts = Counter(update["dedup"]["verdict"] for update in updates)
    assert verdicts == {"duplicate": 500, "follow-up": 500}
    for update in updates:
        original = scenario.duplicate_of[update["source_id"]]
        assert update["dedup"]["case_id"] == case_of[original], "mis-threaded"


async def count_rows(url: str) -> tuple[int, int, int]:
    """Messages, cases and customers in the store."""
    store = await Store.open(url)
    try:
        return await store.run(
            lambda session: tuple(
                session.scalar(select(func.count()).select_from(table))
                for table in (Message, Case, Customer)
            )
        )
    finally:
        await store.close()
