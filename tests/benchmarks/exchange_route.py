"""What the intake and dispatch exchanges cost the broker: confirmed publishes into a quorum
queue through the default exchange against the same through a direct exchange bound to it.

The channels publish every case-open through `[queues] intake_exchange` (and the dispatcher
its acknowledgement requests through `dispatch_exchange`) rather than the default exchange,
so that their broker users need no write permission on it. That adds no round trip; this
measures what it adds on the broker: N persistent messages of about 1 KB, `--concurrency`
confirms in flight, the two routes taking turns for `--rounds` rounds so that a busy machine
weighs on both alike. It prints msg/s per round and the median of each route.

    .venv/bin/python -m tests.benchmarks.exchange_route [-n 5000] [--rounds 3]

With RabbitMQ on 127.0.0.1:5672 (guest/guest); its queue and exchange are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange

from ingest.topology import quorum_arguments
from tests.daemon import BROKER_URL

BODY = b"x" * 1024


async def publish(exchange: AbstractExchange, queue: str, count: int, concurrency: int) -> float:
    """Publish `count` messages with at most `concurrency` confirms in flight; msg/s."""
    limit = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with limit:
            message = aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await exchange.publish(message, routing_key=queue)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


async def benchmark(count: int, rounds: int, concurrency: int) -> None:
    tag = uuid.uuid4().hex[:8]
    queue_name, exchange_name = f"bench-route-{tag}", f"bench-route-{tag}.intake"
    connection = await aio_pika.connect(BROKER_URL)
    async with connection:
        channel: AbstractChannel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments=quorum_arguments(f"{queue_name}.dead", 5)
        )
        direct = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
        )
        await queue.bind(direct, routing_key=queue_name)
        routes = {"default exchange": channel.default_exchange, "direct exchange": direct}
        rates: dict[str, list[float]] = {name: [] for name in routes}
        try:
            for number in range(rounds):
                for name, exchange in routes.items():
                    rate = await publish(exchange, queue_name, count, concurrency)
                    rates[name].append(rate)
                    print(f"round {number + 1}  {name:16} {rate:8.0f} msg/s")
                    await queue.purge()
        finally:
            await channel.queue_delete(queue_name)
            await channel.exchange_delete(exchange_name)
    for name, seen in rates.items():
        print(f"median      {name:16} {statistics.median(seen):8.0f} msg/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="messages per round and route (5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both routes (3)")
    parser.add_argument("--concurrency", type=int, default=64, help="confirms in flight (64)")
    args = parser.parse_args()
    asyncio.run(benchmark(args.n, args.rounds, args.concurrency))


if __name__ == "__main__":
    main()
