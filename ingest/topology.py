"""The broker topology, declared idempotently on every connect."""

from __future__ import annotations

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import ChannelClosed

from dispatcher.identity import normalise
from ingest.settings import QueueSettings, Settings
from normalizer.model import CaseOpen


def quorum_arguments(dead_letter_queue: str, delivery_limit: int) -> dict[str, object]:
    """A quorum queue that dead-letters, at least once, after `delivery_limit` deliveries.

    RabbitMQ 3.10 sets no delivery limit by default and drops dead letters unless told to
    keep them: `at-least-once` needs `reject-publish` overflow.
    """
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def _declare_partitions(channel: AbstractChannel, names: QueueSettings) -> None:
    """case-open split by sender: a consistent-hash exchange (named like the queue) over the
    partition queues, each with one active consumer at a time."""
    partitions = names.partitions()
    if not partitions:
        return
    try:
        exchange = await channel.declare_exchange(
            names.case_open,
            "x-consistent-hash",
            durable=True,  # type: ignore[arg-type]
        )
    except ChannelClosed as error:
        raise TopologyError(
            f"case_open_partitions = {len(partitions)} needs RabbitMQ's consistent-hash "
            "exchange: run `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange` "
            f"on the broker ({error})"
        ) from None
    arguments = quorum_arguments(names.case_open_dead, names.delivery_limit)
    arguments["x-single-active-consumer"] = True
    for name in partitions:
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        await queue.bind(exchange, routing_key="1")  # the binding's weight


def unroutable_exchange(names: QueueSettings) -> str:
    """The alternate exchange of `cases`."""
    return f"{names.cases_exchange}.unroutable"


def intake_queues(names: QueueSettings) -> list[str]:
    """The queues the channels feed, bound to the intake exchange under their own names."""
    return [names.case_open, names.kb_events, names.acknowledgements_dead]


def dispatch_queues(names: QueueSettings) -> list[str]:
    """The queues the dispatcher feeds besides the teams, bound to the dispatch exchange
    under their own names."""
    return [
        names.acknowledgements,
        names.incidents,
        names.case_open_dead,
        names.case_events_dead,
        names.kb_events_dead,
    ]


def case_open_route(names: QueueSettings, case: CaseOpen) -> tuple[str, str]:
    """(exchange, routing key) of a case-open: the intake exchange and the case-open queue,
    or with partitions the hash exchange and the sender's identity, so that a customer's
    messages share a queue. Never the default exchange: the channels may not write to it."""
    return sender_route(names, case.sender.kind, case.sender.address)


def sender_route(names: QueueSettings, kind: str, address: str) -> tuple[str, str]:
    """`case_open_route` of a case-open from this sender."""
    if not names.partitions():
        return names.intake_exchange, names.case_open
    kind, address = normalise(kind, address)
    return names.case_open, f"{kind}:{address}"


class TopologyError(Exception):
    """The broker cannot hold the topology the settings ask for; the message says why."""


async def declare_topology(channel: AbstractChannel, names: QueueSettings) -> None:
    """Declare queues, the `intake`, `dispatch` and `cases` exchanges and their bindings; a
    no-op when they exist."""
    quorum = {"x-queue-type": "quorum"}
    await channel.declare_queue(names.case_open_dead, durable=True, arguments=quorum)
    await channel.declare_queue(
        names.case_open,
        durable=True,
        arguments=quorum_arguments(names.case_open_dead, names.delivery_limit),
    )
    await _declare_partitions(channel, names)
    await channel.declare_queue(names.case_events_dead, durable=True, arguments=quorum)
    await channel.declare_queue(
        names.case_events,
        durable=True,
        arguments=quorum_arguments(names.case_events_dead, names.delivery_limit),
    )
    await channel.declare_queue(names.acknowledgements_dead, durable=True, arguments=quorum)
    await channel.declare_queue(
        names.acknowledgements,
        durable=True,
        arguments=quorum_arguments(
            names.acknowledgements_dead, names.acknowledgement_delivery_limit
        ),
    )
    await channel.declare_queue(names.incidents, durable=True, arguments=quorum)
    await channel.declare_queue(names.kb_events_dead, durable=True, arguments=quorum)
    await channel.declare_queue(
        names.kb_events,
        durable=True,
        arguments=quorum_arguments(names.kb_events_dead, names.delivery_limit),
    )
    # Neither runtime user writes to the default exchange, which reaches every queue: the
    # channels publish to `intake` (and the partitions' hash exchange), the dispatcher to
    # `dispatch` and `cases` (deploy/rabbitmq/setup.sh).
    for exchange_name, queues in (
        (names.intake_exchange, intake_queues(names)),
        (names.dispatch_exchange, dispatch_queues(names)),
    ):
        exchange = await channel.declare_exchange(exchange_name, ExchangeType.DIRECT, durable=True)
        for name in queues:
            queue = await channel.get_queue(name, ensure=False)
            await queue.bind(exchange, routing_key=name)
    # What the `cases` exchange cannot route (a team queue removed by hand) is kept in the
    # team dead letters by the broker itself, through an alternate exchange.
    unroutable = await channel.declare_exchange(
        unroutable_exchange(names), ExchangeType.FANOUT, durable=True
    )
    team_dead = await channel.declare_queue(names.team_dead, durable=True, arguments=quorum)
    await team_dead.bind(unroutable)
    exchange = await channel.declare_exchange(
        names.cases_exchange,
        ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": unroutable_exchange(names)},
    )
    for name in [*names.declared_teams(), names.case_update]:
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments=quorum_arguments(names.team_dead, names.team_delivery_limit),
        )
        await queue.bind(exchange, routing_key=name)


async def declare_with(url: str, settings: Settings) -> None:
    """Connect as `url` and declare the topology the settings name (`ingest broker declare`)."""
    import aio_pika

    connection = await aio_pika.connect(url, timeout=settings.broker.connect_timeout_s)
    async with connection:
        await declare_topology(await connection.channel(), settings.queues)
