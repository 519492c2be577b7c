"""Rate limits per key and per client address: 429 with Retry-After and the RateLimit
headers, counted together by every channels process through the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import psycopg

from tests.daemon import API_KEY, DaemonBase
from tests.local import LocalDaemon

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MESSAGE = {"sender": {"email": "ann@example.com"}, "text": "Is my order on its way?"}
KEY_BUCKET = "key:(settings 1)"


WINDOW_S = 86_400
"""Windows start at multiples of their length since the epoch: a day's window makes it
unlikely (one in several thousand) that a test's requests fall into two of them."""


def limits(per_key: int = 1_000_000, per_client: int = 1_000_000) -> dict[str, str]:
    return {
        "INGEST_CHANNELS__WEB__RATE_LIMIT_PER_KEY": str(per_key),
        "INGEST_CHANNELS__WEB__RATE_LIMIT_PER_CLIENT": str(per_client),
        "INGEST_CHANNELS__WEB__RATE_WINDOW_S": str(WINDOW_S),
    }


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/api/v1/messages", json=MESSAGE, headers=AUTH | (headers or {}))


async def test_a_burst_over_a_keys_limit_is_answered_429_with_the_headers(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = await make_daemon().launch(env=limits(per_key=20))
    # No kept-alive connections: one the server times out while the burst queues for it
    # would fail a request, on a busy machine, for reasons that are not the daemon's.
    pool = httpx.Limits(max_connections=32, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=daemon.url, limits=pool, timeout=60) as client:
        answers = await asyncio.gather(*(submit(client) for _ in range(200)))
    statuses = [answer.status_code for answer in answers]
    assert (statuses.count(202), statuses.count(429)) == (20, 180)

    accepted = [a for a in answers if a.status_code == 202]
    assert sorted(int(a.headers["RateLimit-Remaining"]) for a in accepted) == list(range(20))
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["RateLimit-Limit"] == "20"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == f"20;w={WINDOW_S}"
    assert 0 < int(refused.headers["Retry-After"]) <= WINDOW_S
    assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"]
    assert f"over 20 requests in {WINDOW_S} s" in refused.json()["detail"]


async def test_each_client_address_has_its_own_limit(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = await make_daemon().launch(env=limits(per_client=3))
    # Behind a proxy on 127.0.0.1 the client is the X-Forwarded-For address (uvicorn's default).
    first = {"X-Forwarded-For": "192.0.2.10"}
    second = {"X-Forwarded-For": "192.0.2.20"}
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        statuses = [(await submit(client, first)).status_code for _ in range(4)]
        other = (await submit(client, second)).status_code
        # Counted before the key is checked, so that guessing keys is limited too.
        no_key = await client.post(
            "/api/v1/messages", json=MESSAGE, headers=first | {"Authorization": "Bearer x"}
        )
    assert statuses == [202, 202, 202, 429]
    assert other == 202
    assert no_key.status_code == 429


async def test_a_keys_own_limit_wins_over_the_default(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    from tests.test_api_keys import create_key

    daemon = await make_daemon().launch(env=limits(per_key=100))
    key = await create_key(daemon, "small", "--rate-limit", "2")
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        statuses = [
            (
                await client.post(
                    "/api/v1/messages", json=MESSAGE, headers={"Authorization": f"Bearer {key}"}
                )
            ).status_code
            for _ in range(3)
        ]
        default = await submit(client)
    assert statuses == [202, 202, 429]
    assert (default.status_code, default.headers["RateLimit-Limit"]) == (202, "100")


async def test_channels_processes_count_together(
    make_daemon: Callable[..., LocalDaemon], pg_url: str
) -> None:
    first = await make_daemon(store_url=pg_url, settings_name="a.toml").launch(
        "channels", limits(per_key=6)
    )
    second = make_daemon(store_url=pg_url, settings_name="b.toml")
    await second.launch(
        "channels", limits(per_key=6) | {"INGEST_PATHS__DATA_DIR": str(second.workdir / "var-b")}
    )
    async with httpx.AsyncClient(base_url=first.url) as client:
        assert [(await submit(client)).status_code for _ in range(4)] == [202] * 4
    await counted_in_store(pg_url, KEY_BUCKET, 4)
    async with httpx.AsyncClient(base_url=second.url) as client:
        statuses = [(await submit(client)).status_code for _ in range(3)]
    assert statuses == [202, 202, 429]
    await counted_in_store(pg_url, KEY_BUCKET, 6)


async def counted_in_store(url: str, bucket: str, count: int, timeout_s: float = 10.0) -> None:
    """Wait until the processes' counts for `bucket` add up to `count` in the store."""
    deadline = time.monotonic() + timeout_s
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
        while True:
            cursor = await db.execute(
                "SELECT coalesce(sum(count), 0) FROM rate_counts WHERE bucket = %s", (bucket,)
            )
            row = await cursor.fetchone()
            if row and row[0] == count:
                return
            assert time.monotonic() < deadline, f"{bucket} at {row}, not {count}"
            await asyncio.sleep(0.05)


async def test_other_routes_are_not_limited(make_daemon: Callable[..., LocalDaemon]) -> None:
    daemon: DaemonBase = await make_daemon().launch(env=limits(per_client=1))
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        assert [(await client.get("/readyz")).status_code for _ in range(3)] == [200] * 3
