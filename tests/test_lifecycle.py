"""SIGTERM with work in flight: exit 0 within 10 s, and every accepted message arrives once."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from ingest.daemon import listen
from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import API_KEY, Daemon, DaemonBase, Names, run_ingest, settings_text


async def submit_until_refused(daemon: DaemonBase, key: str) -> str | None:
    """Submit one message; its source id when accepted, None when the daemon refused or left."""
    try:
        async with daemon.client() as client:
            answer = await client.post(
                "/api/v1/messages",
                json={"sender": {"email": "ann@example.com"}, "text": f"in flight {key}"},
                headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
            )
    except httpx.TransportError:
        return None
    return key if answer.status_code == 202 else None


@pytest.mark.slow
async def test_sigterm_drains_in_flight_work_and_exits_zero(
    make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    daemon = make_process().start()
    await daemon.wait_ready()
    semaphore = asyncio.Semaphore(16)

    async def one(number: int) -> str | None:
        async with semaphore:
            return await submit_until_refused(daemon, f"term-{number:04d}")

    tasks = [asyncio.create_task(one(n)) for n in range(400)]
    await asyncio.wait(tasks[:60])  # some done, many still in flight
    signalled_at = time.monotonic()
    daemon.signal(signal.SIGTERM)
    exit_code = await daemon.wait_exit(60)
    took_s = time.monotonic() - signalled_at
    accepted = {key for key in await asyncio.gather(*tasks) if key}

    assert exit_code == 0, daemon.log_text()
    assert took_s < 30  # promptly: a bound for a loaded CI machine, not a speed claim
    assert 60 <= len(accepted) < 400

    # Whatever the first daemon accepted but had not forwarded, the next one forwards.
    again = make_process().start()
    await again.wait_ready()
    forwarded = [
        case["source_id"]
        for case in bodies(await collect(amqp, again.names.default, len(accepted)))
    ]
    forwarded += [case["source_id"] for case in await forwarded_behind(amqp, again.names)]
    assert len(forwarded) == len(set(forwarded)), "a message was forwarded twice"
    assert accepted <= set(forwarded), "an accepted message was lost"


def test_a_taken_http_port_stops_start_up_with_one_line(tmp_path: Path) -> None:
    names = Names()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = tmp_path / "settings.toml"
        settings.write_text(settings_text(tmp_path, names, port))
        result = run_ingest(settings, "run")
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"ingest: cannot start: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


async def test_http_connections_send_without_waiting_for_acks() -> None:
    """Nagle's algorithm is off on the HTTP port's connections: with it on, each response's
    body waited for the client's delayed ACK of its head (40 ms a request)."""
    listener = listen("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connection(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = writer.get_extra_info("socket")
        accepted.set_result(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            assert await asyncio.wait_for(accepted, 10) == 1
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()
