"""deploy/rabbitmq/setup.sh on the real broker: a vhost of the test's own, least-privilege
users, the daemon running with them (channels and dispatcher apart), and the channels user
refused where it has no business: reading a team queue, declaring, and publishing anywhere
but its intake exchange (the default exchange would reach every queue by name)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from aiormq.exceptions import ChannelAccessRefused

from ingest.publisher import spool_directory
from ingest.runner import REASON_HEADER
from ingest.spool import Outgoing, Spool
from normalizer.model import SCHEMA
from tests.broker_admin import RABBITMQCTL, rabbitmqctl
from tests.conftest import bodies, collect
from tests.daemon import Names, ingest_command
from tests.local import LocalDaemon
from tests.test_acknowledging import TRIAGE
from tests.test_dispatcher import case_open
from tests.test_web_api import MESSAGE, submit

pytestmark = pytest.mark.slow  # some twenty rabbitmqctl runs, a second or two each

SETUP = Path(__file__).parent.parent / "deploy" / "rabbitmq" / "setup.sh"
ROLES = ("admin", "channels", "dispatcher", "all")


class Broker:
    """The vhost and users setup.sh made for one test."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.vhost = f"ingest-test-{tag}"
        self.user_prefix = f"it{tag}-"
        self.passwords = {role: f"pw-{role}-{uuid.uuid4().hex[:12]}" for role in ROLES}

    def url(self, role: str) -> str:
        user = f"{self.user_prefix}{role}"
        return f"amqp://{user}:{self.passwords[role]}@127.0.0.1:5672/{self.vhost}"

    def run_setup(self, names: Names, env_dir: Path) -> subprocess.CompletedProcess[str]:
        env = (
            os.environ
            | {"RABBITMQCTL": RABBITMQCTL}
            | {
                f"INGEST_RABBITMQ_{role.upper()}_PASSWORD": password
                for role, password in self.passwords.items()
            }
        )
        command = [
            "bash", str(SETUP), "--vhost", self.vhost, "--prefix", f"{names.prefix}.",
            "--user-prefix", self.user_prefix, "--env-dir", str(env_dir),
        ]  # fmt: skip
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    def remove(self) -> None:
        rabbitmqctl("delete_vhost", self.vhost, check=False)
        for role in ROLES:
            rabbitmqctl("delete_user", f"{self.user_prefix}{role}", check=False)


@pytest.fixture
def broker() -> Iterator[Broker]:
    made = Broker()
    yield made
    made.remove()


async def test_the_daemon_runs_with_least_privilege_users_on_its_own_vhost(
    broker: Broker, names: Names, tmp_path: Path, make_daemon: Callable[..., LocalDaemon]
) -> None:
    setup = broker.run_setup(names, tmp_path)
    assert setup.returncode == 0, setup.stderr
    env_file = (tmp_path / "broker-channels.env").read_text()
    assert env_file.startswith(f"INGEST_BROKER__URL=amqp://{broker.user_prefix}channels:")
    assert oct((tmp_path / "broker-channels.env").stat().st_mode & 0o777) == "0o640"
    again = broker.run_setup(names, tmp_path)  # idempotent: an upgrade runs it again
    assert again.returncode == 0, again.stderr

    no_declare = "[broker]\ndeclare_topology = false\n"
    # The dispatcher believes a relay sends acknowledgements, the channels know none: each
    # request crosses the broker twice, published by each user (and dead-lettered, saying so).
    relay = '[outbound.mail]\nenabled = true\nfrom_address = "support@example.com"\n'
    dispatcher = make_daemon(
        broker.url("dispatcher"), TRIAGE + relay, settings_name="dispatcher.toml"
    )
    channels = make_daemon(broker.url("channels"), settings_name="channels.toml")
    for daemon in (dispatcher, channels):  # the same names; the broker section overridden
        daemon.settings_path.write_text(
            daemon.settings_path.read_text().replace("[broker]\n", no_declare, 1)
        )
    declared = await ingest_command(
        dispatcher.settings_path, "broker", "declare", "--url", broker.url("admin")
    )
    assert declared.returncode == 0, declared.stderr
    # Spooled by an earlier version, addressed to the default exchange: replayed through the
    # intake exchange, the one the channels user may write to.
    spooled = case_open(1)
    Spool(spool_directory(channels.workdir / "var")).put(
        Outgoing(spooled.to_json(), spooled.id, names.case_open, {"x-schema": SCHEMA})
    )
    await dispatcher.launch(role="dispatcher")
    await channels.launch(role="channels")
    assert (await submit(channels, MESSAGE)).status_code == 202

    async with await aio_pika.connect(broker.url("admin")) as admin:
        amqp = await admin.channel()
        cases = bodies(await collect(amqp, names.default, 2))
        assert {case["sender"]["address"] for case in cases} == {
            spooled.sender.address,
            MESSAGE["sender"]["email"].lower(),  # type: ignore[index]
        }
        # Requested by the dispatcher through the dispatch exchange, dead-lettered by the
        # channels through the intake exchange.
        dead = await collect(amqp, names.acknowledgements_dead, 2)
        addressed = sorted(json.loads(message.body)["to"] for message in dead)
        assert addressed == sorted(case["sender"]["address"] for case in cases)
        assert all("[outbound.mail]" in str((m.headers or {})[REASON_HEADER]) for m in dead)
        # A case-open the dispatcher cannot read: dead-lettered through the dispatch exchange.
        await amqp.default_exchange.publish(
            aio_pika.Message(b"not json", message_id="poison"), routing_key=names.case_open
        )
        [poison] = await collect(amqp, names.case_open_dead, 1)
        assert (poison.message_id, poison.body) == ("poison", b"not json")
    for daemon, role in ((channels, "channels"), (dispatcher, "dispatcher")):
        checked = await ingest_command(daemon.settings_path, "doctor", "--role", role)
        [line] = [x for x in checked.stdout.decode().splitlines() if " broker " in x]
        assert line.startswith("ok"), line

    await assert_confined(broker, names)

    # The all-in-one daemon with its own user: no publish of it needs the default exchange.
    await channels.close()
    await dispatcher.close()
    everything = make_daemon(broker.url("all"), settings_name="all.toml")
    everything.settings_path.write_text(
        everything.settings_path.read_text().replace("[broker]\n", no_declare, 1)
    )
    await everything.launch(role="all")
    other = MESSAGE | {"subject": "Another matter", "text": "Where is my parcel?"}
    assert (await submit(everything, other)).status_code == 202
    async with await aio_pika.connect(broker.url("admin")) as admin:
        [case] = bodies(await collect(await admin.channel(), names.default, 1))
    assert case["subject"] == "Another matter"
    checked = await ingest_command(everything.settings_path, "doctor", "--role", "all")
    [line] = [x for x in checked.stdout.decode().splitlines() if " broker " in x]
    assert line.startswith("ok"), line

    # The permissions of the release before the intake exchange: doctor says to run setup.sh.
    user, escaped = f"{broker.user_prefix}channels", names.prefix.replace(".", "\\.")
    old_write = f"^(amq\\.default|{escaped}\\.case-open)$"
    await asyncio.to_thread(
        rabbitmqctl, "set_permissions", "-p", broker.vhost, user, "^$", old_write, ".*"
    )
    checked = await ingest_command(channels.settings_path, "doctor", "--role", "channels")
    [line] = [x for x in checked.stdout.decode().splitlines() if " broker " in x]
    assert line.startswith("FAIL") and f"may not publish to {names.intake}" in line, line
    assert "deploy/rabbitmq/setup.sh" in line


async def assert_confined(broker: Broker, names: Names) -> None:
    """Neither runtime user reads a team queue, declares anything, or publishes to the default
    exchange (which reaches every queue); the channels publish nowhere but to the intake
    exchange, which routes only to the queues the channels feed, and the dispatcher not there."""
    message = aio_pika.Message(b'{"forged": true}')

    async def read_team_queue(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(names.default, ensure=False)
        await queue.get(no_ack=False, fail=False)

    async def declare(channel: AbstractChannel) -> None:
        await channel.declare_queue(f"{names.prefix}.stray", durable=True)

    async def default_to_team(channel: AbstractChannel) -> None:
        await channel.default_exchange.publish(message, routing_key=names.default)

    async def default_to_case_open(channel: AbstractChannel) -> None:
        await channel.default_exchange.publish(message, routing_key=names.case_open)

    async def cases_to_team(channel: AbstractChannel) -> None:
        cases = await channel.get_exchange(names.exchange, ensure=False)
        await cases.publish(message, routing_key=names.default)

    async def intake_to_case_open(channel: AbstractChannel) -> None:
        intake = await channel.get_exchange(names.intake, ensure=False)
        await intake.publish(message, routing_key=names.case_open)

    common = [read_team_queue, declare, default_to_team, default_to_case_open]
    for role, attempts in (
        ("channels", [*common, cases_to_team]),
        ("dispatcher", [*common, intake_to_case_open]),
    ):
        for attempt in attempts:
            async with await aio_pika.connect(broker.url(role)) as connection:
                channel = await connection.channel()  # with confirms: a refused publish raises
                with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
                    await attempt(channel)
    async with await aio_pika.connect(broker.url("channels")) as connection:
        channel = await connection.channel()
        intake = await channel.get_exchange(names.intake, ensure=False)
        await intake.publish(message, routing_key=names.default)  # confirmed, routed nowhere
    async with await aio_pika.connect(broker.url("admin")) as admin:
        team = await (await admin.channel()).declare_queue(names.default, passive=True)
        assert team.declaration_result.message_count == 0
