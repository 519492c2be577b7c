"""The channel registry is the one place a channel is made known: its settings section, its
payload kinds, how to build it, its replier; and a channel that exists only here, in the
tests, is built, started and its messages become cases with nothing but its record."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pkgutil import resolve_name
from typing import get_args

import pytest

from channels.registry import CHANNELS, ChannelSettings
from channels.replies import unanswerable
from channels.settings import OutboundSettings
from ingest.settings import Settings
from normalizer.envelope import PAYLOAD_KINDS
from normalizer.model import Channel
from tests.conftest import bodies, collect
from tests.echo_channel import ECHO, WithEcho
from tests.local import LocalDaemon
from tests.shipped import SHIPPED


def test_the_names_are_unique_and_no_other_section_is_a_channel() -> None:
    names = [record.name for record in CHANNELS]
    assert len(names) == len(set(names))
    assert set(ChannelSettings.model_fields) == {*names, "mail"}


@pytest.mark.parametrize("record", CHANNELS, ids=lambda record: record.name)
def test_every_channel_has_a_section_payload_kinds_and_a_builder(record: object) -> None:
    from channels.registry import ChannelRecord

    assert isinstance(record, ChannelRecord)
    assert ChannelSettings.model_fields[record.name].annotation is record.settings
    assert "enabled" in record.settings.model_fields, "the daemon starts it only when enabled"
    assert record.payloads, "a channel emits at least one kind of payload"
    assert set(record.payloads) <= set(PAYLOAD_KINDS)
    assert callable(record.builder())
    shipped = tomllib.loads(SHIPPED.read_text())["channels"]
    assert record.name in shipped, f"settings.toml has no [channels.{record.name}] example"


def test_every_payload_kind_comes_from_some_channel() -> None:
    carried = {kind for record in CHANNELS for kind in record.payloads}
    assert carried == set(PAYLOAD_KINDS)


@pytest.mark.parametrize(
    "record", [r for r in CHANNELS if r.replier], ids=lambda record: record.name
)
def test_a_replier_answers_case_open_channels_and_says_what_it_needs(record: object) -> None:
    from channels.registry import ChannelRecord

    assert isinstance(record, ChannelRecord) and record.replier is not None
    assert callable(resolve_name(record.replier.build))
    assert set(record.replier.answers) <= set(get_args(Channel))
    channels = ChannelSettings()
    assert not record.replier.configured(channels.section(record)), "off by default"
    for channel, missing in record.replier.answers.items():
        if record.replier.refuses(channel, channels.section(record)):
            continue
        why = unanswerable(channel, "+4520000000", channels, OutboundSettings())
        assert why == f"no replier configured: {missing}"


def with_echo(texts: list[str]) -> Callable[[Settings], Settings]:
    """The settings as loaded, with the test channels' sections: echo on, dormant off."""

    def amend(settings: Settings) -> Settings:
        values = {**dict(settings.channels), "echo": {"enabled": True, "texts": texts}}
        channels = WithEcho.model_validate(values)
        assert [record.name for record, _ in channels.enabled()][-1] == ECHO.name
        return settings.model_copy(update={"channels": channels})

    return amend


async def test_a_channel_known_only_by_its_record_becomes_cases(
    make_daemon: Callable[..., LocalDaemon], amqp: object
) -> None:
    texts = ["The first message of the echo channel.", "And its second one."]
    daemon = make_daemon()
    daemon.start(amend=with_echo(texts))
    # The dormant channel's builder raises: a daemon that built it would never be ready.
    await daemon.wait_ready()
    forwarded = bodies(await collect(amqp, daemon.names.default, len(texts)))  # type: ignore[arg-type]
    assert sorted(case["text"] for case in forwarded) == sorted(texts)
    assert sorted(case["source_id"] for case in forwarded) == ["echo-0", "echo-1"]
    assert await daemon.counted("ingest_case_opens_total", channel="web") == len(texts)
